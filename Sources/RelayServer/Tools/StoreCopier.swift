import Foundation
import RelayCore

/// Copies what a relay needs to go on from one store into another, empty one — moving a relay
/// from SQLite to PostgreSQL, say: subscriptions (secrets included), authorizers with their
/// tokens, each component's ticket and token, and the queue — every event with an unfinished
/// delivery, re-queued due now (attempt counts and schedules start again; at least once holds).
/// Delivered history is copied only as far back as `history`, as events without deliveries
/// (listed, and replayable); the rest stays in the old store. Dead-lettered deliveries are either
/// queued again (`requeueDead`) or left behind and counted, never dropped without a word: the
/// store has no way to take a delivery in as dead-lettered without sending it first.
public enum StoreCopier {
    public struct Summary: Sendable, Equatable, CustomStringConvertible {
        public var subscriptions = 0
        public var authorizers = 0
        public var tickets = 0
        public var componentTokens = 0
        public var queuedEvents = 0
        public var queuedDeliveries = 0
        public var historyEvents = 0
        /// Dead-lettered deliveries left in the old store (not queued again).
        public var deadLetteredLeft = 0

        public var description: String {
            """
            copied \(subscriptions) subscriptions, \(authorizers) authorizers, \(tickets) tickets, \(componentTokens) component tokens, \
            \(queuedEvents) events with \(queuedDeliveries) unfinished deliveries, \(historyEvents) delivered events of the history\(deadLetteredNote)
            """
        }

        private var deadLetteredNote: String {
            guard deadLetteredLeft > 0 else { return "" }
            return """
                ; \(deadLetteredLeft) dead-lettered deliveries were not copied (still listed in the old store; \
                copy again into an empty store with --requeue-dead to queue them in the new one)
                """
        }
    }

    public struct NotEmpty: Error, CustomStringConvertible {
        public let description = "the destination store already holds subscriptions, authorizers or events; copy into an empty database"
    }

    /// `components` are the component AppIDs whose ticket and token to copy (the store lists
    /// neither); `history` how far back delivered events are copied (zero: none); `requeueDead`
    /// queues dead-lettered deliveries again with the unfinished ones.
    public static func copy(from source: any RelayStore, to destination: any RelayStore, components: [String], history: TimeInterval,
                            requeueDead: Bool = false, now: Date) async throws -> Summary {
        guard try await destination.subscriptions().isEmpty, try await destination.authorizers().isEmpty,
              try await destination.events(EventQuery(limit: 1)).isEmpty else { throw NotEmpty() }
        var summary = Summary()
        let subscriptions = try await source.subscriptions()
        for subscription in subscriptions { try await destination.insertSubscription(subscription) }
        summary.subscriptions = subscriptions.count
        for authorizer in try await source.authorizers() {
            try await destination.saveAuthorizer(authorizer)
            summary.authorizers += 1
        }
        for component in components {
            if let ticket = try await source.ticket(componentAppid: component) {
                _ = try await destination.commit(IntakeRecord(event: nil, ticket: ticket))
                summary.tickets += 1
            }
            if let token = try await source.componentToken(appid: component) {
                try await destination.saveComponentToken(appid: component, token)
                summary.componentTokens += 1
            }
        }
        // The queue: events with an unfinished delivery, and to which subscriptions, in one read
        // (ids only, never the events themselves: a store may hold millions).
        var unfinished: [String: [String]] = [:]  // event id -> subscription ids
        for key in try await source.unfinishedDeliveryKeys(includingDead: requeueDead) {
            unfinished[key.eventId, default: []].append(key.subscriptionId)
        }
        if !requeueDead { try await eachPage(of: .dead, in: source) { summary.deadLetteredLeft += $0.count } }
        var ids = Array(unfinished.keys)
        if history > 0 {
            let since = now.addingTimeInterval(-history)
            var before: String?
            paging: while true {
                let page = try await source.events(EventQuery(before: before, limit: 500))
                for event in page {
                    guard event.receivedAt >= since else { break paging }
                    if unfinished[event.id] == nil { ids.append(event.id) }
                }
                guard let last = page.last, page.count == 500 else { break }
                before = last.id
            }
        }
        // One pass in order of arrival, so ordered subscriptions keep their order and the new store
        // lists events as the old one did: an event id starts with its arrival time (a ULID), so
        // sorting the ids sorts by arrival, to the millisecond (the store does not expose its sequence).
        let byId = Dictionary(subscriptions.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        for id in ids.sorted() {
            guard let event = try await source.event(id: id) else { continue }  // purged meanwhile
            let planned = (unfinished[event.id] ?? []).compactMap { byId[$0].map { PlannedDelivery(event: event, subscription: $0) } }
            _ = try await destination.commit(IntakeRecord(event: event, ticket: nil, deliveries: planned))
            if unfinished[event.id] == nil {
                summary.historyEvents += 1
            } else {
                summary.queuedEvents += 1
                summary.queuedDeliveries += planned.count
            }
        }
        return summary
    }

    /// Every delivery with `status`, a page at a time.
    private static func eachPage(of status: DeliveryStatus, in store: any RelayStore,
                                 _ body: ([DeliveryRecord]) throws -> Void) async throws {
        var before: String?
        while true {
            let page = try await store.deliveries(DeliveryQuery(status: status, before: before, limit: 500))
            try body(page)
            guard let last = page.last, page.count == 500 else { return }
            before = last.id
        }
    }
}
