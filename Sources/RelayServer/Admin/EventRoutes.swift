import Foundation
import Hummingbird
import RelayCore
import WeChatXML

/// `/v1/events` and `/v1/deliveries`: what was received, where it went, and retries by hand.
struct EventRoutes: Sendable {
    let store: any RelayStore
    let dispatcher: Dispatcher
    let clock: any RelayClock

    /// `after=`, nil when absent or empty: a client that passes back a null `next_cursor` as an
    /// empty string means the first page (an empty cursor gave an empty list of deliveries).
    static func cursor(_ query: Parameters) -> String? {
        query["after"].flatMap { $0.isEmpty ? nil : String($0) }
    }

    func register(on group: RouterGroup<RelayRequestContext>) {
        group.get("events") { request, _ in
            let query = request.uri.queryParameters
            let limit = try Self.limit(query["limit"].map(String.init))
            let after = Self.cursor(query)
            // The cursor is an event's place in the order: one that names no stored event gave an
            // empty page, which a client paging through took for the end of the list.
            if let after, try await store.event(id: after) == nil {
                throw AdminError.badRequest("after: no stored event \(after) (not a next_cursor of this API, or purged past "
                                            + "storage.retention since); list again without after")
            }
            let events = try await store.events(EventQuery(appid: query["appid"].map(String.init), type: query["type"].map(String.init),
                                                           before: after, limit: limit))
            var items: [JSONValue] = []
            for event in events { items.append(AdminJSON.event(event, deliveries: try await deliveries(of: event.id))) }
            return AdminJSON.list(items, lastId: events.last?.id, limit: limit)
        }
        group.get("events/{id}") { _, context in
            let id = context.parameters.get("id") ?? ""
            guard let event = try await store.event(id: id) else { throw AdminError.notFound("event \(id)") }
            return AdminJSON.response(AdminJSON.event(event, deliveries: try await deliveries(of: id)))
        }
        group.get("deliveries") { request, _ in
            let query = request.uri.queryParameters
            let limit = try Self.limit(query["limit"].map(String.init))
            let status = try query["status"].map { text -> DeliveryStatus in
                guard let status = DeliveryStatus(rawValue: String(text)) else {
                    throw AdminError.badRequest("status must be one of \(DeliveryStatus.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                return status
            }
            let found = try await store.deliveries(DeliveryQuery(
                subscriptionId: query["subscription"].map(String.init), status: status, before: Self.cursor(query), limit: limit))
            var items: [JSONValue] = []
            for delivery in found { items.append(AdminJSON.delivery(delivery, attempts: try await store.attempts(deliveryId: delivery.id))) }
            return AdminJSON.list(items, lastId: found.last?.id, limit: limit)
        }
        group.post("deliveries/{id}/retry") { _, context in
            let id = context.parameters.get("id") ?? ""
            guard let delivery = try await store.retryDelivery(id: id, now: clock.now()) else { throw AdminError.notFound("delivery \(id)") }
            dispatcher.notify(subscriptionIds: [delivery.subscriptionId])
            return AdminJSON.response(AdminJSON.delivery(delivery, attempts: try await store.attempts(deliveryId: id)), status: .accepted)
        }
    }

    private func deliveries(of eventId: String) async throws -> [(DeliveryRecord, [DeliveryAttempt])] {
        var result: [(DeliveryRecord, [DeliveryAttempt])] = []
        for delivery in try await store.deliveries(eventId: eventId) {
            result.append((delivery, try await store.attempts(deliveryId: delivery.id)))
        }
        return result
    }

    static func limit(_ text: String?) throws -> Int {
        guard let text else { return 50 }
        guard let limit = Int(text), (1...500).contains(limit) else { throw AdminError.badRequest("limit must be 1 to 500") }
        return limit
    }
}
