import Foundation
import Hummingbird
import RelayCore
import WeChatXML

/// `/v1/subscriptions`: API subscriptions can be created, changed, deleted, rotated, pinged and
/// replayed; config subscriptions are listed read-only (change them in `relay.yml`).
struct SubscriptionRoutes: Sendable {
    let store: any RelayStore
    let registry: SubscriptionRegistry
    let dispatcher: Dispatcher
    let egress: EgressGuard
    let clock: any RelayClock

    static let fields: Set<String> = ["id", "url", "secret", "appids", "events", "ordered", "reply"]

    /// A subscription's unfinished deliveries; none waiting reads as 0.
    private func backlog(_ id: String, _ backlogs: [String: QueueStats]) -> QueueStats {
        backlogs[id] ?? QueueStats(depth: 0, oldestPendingCreatedAt: nil)
    }

    func register(on group: RouterGroup<RelayRequestContext>) {
        group.get("subscriptions") { _, _ in
            let all = try await store.subscriptions()
            let backlogs = try await store.queueStats().bySubscription
            return AdminJSON.list(all.map { AdminJSON.subscription($0, circuit: dispatcher.circuit(subscriptionId: $0.id), backlog: backlog($0.id, backlogs)) },
                                  lastId: nil, limit: Int.max)
        }
        group.post("subscriptions") { request, _ in try await create(request) }
        group.get("subscriptions/{id}") { _, context in
            let subscription = try await existing(context)
            // Its own part of the queue only: automation polls this.
            let backlogs = try await store.queueStats(subscriptionId: subscription.id).bySubscription
            return AdminJSON.response(AdminJSON.subscription(subscription, circuit: dispatcher.circuit(subscriptionId: subscription.id),
                                                             backlog: backlog(subscription.id, backlogs)))
        }
        group.patch("subscriptions/{id}") { request, context in try await update(request, context) }
        group.delete("subscriptions/{id}") { _, context in
            let subscription = try await existing(context)
            try readOnlyCheck(subscription)
            let now = clock.now()
            _ = try await store.deleteSubscription(id: subscription.id, now: now)
            registry.remove(id: subscription.id)
            dispatcher.subscriptionsChanged()
            dispatcher.settleLater(subscriptionId: subscription.id, changedAt: now)
            return Response(status: .noContent)
        }
        group.post("subscriptions/{id}/rotate-secret") { _, context in try await rotate(context) }
        group.post("subscriptions/{id}/test") { _, context in try await ping(context) }
        group.post("subscriptions/{id}/replay") { request, context in try await replay(request, context) }
    }

    private func existing(_ context: RelayRequestContext) async throws -> Subscription {
        let id = context.parameters.get("id") ?? ""
        guard let subscription = try await store.subscription(id: id) else { throw AdminError.notFound("subscription \(id)") }
        return subscription
    }

    private static func appids(_ body: JSONBody) throws -> [String]? {
        guard let appids = try body.strings("appids") else { return nil }
        do throws(SubscriptionFilter.Problem) { try SubscriptionFilter.check(appids: appids) } catch { throw badFilter(error) }
        return appids
    }

    private static func events(_ body: JSONBody) throws -> [String]? {
        guard let events = try body.strings("events") else { return nil }
        do throws(SubscriptionFilter.Problem) { try SubscriptionFilter.check(events: events) } catch { throw badFilter(error) }
        return events
    }

    private static func badFilter(_ problem: SubscriptionFilter.Problem) -> AdminError { .badRequest(problem.path + ": " + problem.message) }

    private func readOnlyCheck(_ subscription: Subscription) throws {
        guard subscription.source == .api else {
            throw AdminError.conflict("subscription \(subscription.id) is defined in relay.yml and is read-only here; change it there")
        }
    }

    private func create(_ request: Request) async throws -> Response {
        let body = try await JSONBody.read(request, allowed: Self.fields)
        let id = try body.string("id") ?? "sub_" + UUID().uuidString.lowercased().prefix(12)
        guard InputRules.isSubscriptionID(id) else {
            throw AdminError.badRequest("id: use letters, digits, - and _ (at most 64)")
        }
        guard let url = try body.string("url") else { throw AdminError.badRequest("url is required") }
        try await checkURL(url)
        let secret = try body.string("secret") ?? WebhookSigner.generateSecret()
        guard WebhookSigner.isValidSecret(secret) else {
            throw AdminError.badRequest("secret: expected whsec_ followed by base64 of at least 24 bytes (or leave it out)")
        }
        let subscription = Subscription(
            id: id, url: url, appids: try Self.appids(body) ?? ["*"], events: try Self.events(body) ?? ["*"],
            reply: try body.bool("reply") ?? false, ordered: try body.bool("ordered") ?? false, source: .api,
            createdAt: clock.now(), secret: secret)
        try replyConflictCheck(subscription)
        do {
            try await store.insertSubscription(subscription)
        } catch let error as StoreError where error.kind == .conflict {
            throw AdminError.conflict(error.message)
        }
        registry.upsert(subscription)
        dispatcher.subscriptionsChanged()
        dispatcher.settleLater(subscriptionId: subscription.id, changedAt: subscription.createdAt)
        return AdminJSON.response(AdminJSON.subscription(subscription, secret: true), status: .created)
    }

    private func update(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        var subscription = try await existing(context)
        try readOnlyCheck(subscription)
        let body = try await JSONBody.read(request, allowed: ["url", "appids", "events", "ordered", "reply", "status"])
        if let url = try body.string("url") {
            try await checkURL(url)
            subscription.url = url
        }
        if let appids = try Self.appids(body) { subscription.appids = appids }
        if let events = try Self.events(body) { subscription.events = events }
        if let ordered = try body.bool("ordered") { subscription.ordered = ordered }
        if let reply = try body.bool("reply") { subscription.reply = reply }
        if let status = try body.string("status") {
            guard let parsed = Subscription.Status(rawValue: status) else { throw AdminError.badRequest("status must be enabled or disabled") }
            subscription.status = parsed
        }
        try replyConflictCheck(subscription)
        let now = clock.now()
        try await store.updateSubscription(subscription, now: now)
        registry.upsert(subscription)
        dispatcher.subscriptionsChanged()
        dispatcher.settleLater(subscriptionId: subscription.id, changedAt: now)
        return AdminJSON.response(AdminJSON.subscription(subscription))
    }

    private func rotate(_ context: RelayRequestContext) async throws -> Response {
        var subscription = try await existing(context)
        let now = clock.now()
        subscription.previousSecret = subscription.secret
        subscription.previousSecretExpiresAt = now.addingTimeInterval(24 * 3600)
        subscription.secret = WebhookSigner.generateSecret()
        try await store.updateSubscription(subscription, now: now)
        registry.upsert(subscription)
        return AdminJSON.response(AdminJSON.subscription(subscription, secret: true))
    }

    /// Sends a `relay.ping` event to this subscription only.
    private func ping(_ context: RelayRequestContext) async throws -> Response {
        let subscription = try await existing(context)
        let now = clock.now()
        let id = EventID.make(at: now)
        let data = JSONValue.object([("message", .string("test event from WeChat Relay")), ("subscription_id", .string(subscription.id))])
        let event = RelayEvent(id: id, type: EventType.ping, appid: "relay", componentAppid: nil, receivedAt: now,
                               dataJSON: data.serialized, dedupKey: "ping:" + id, fromUser: nil)
        _ = try await store.commit(IntakeRecord(event: event, ticket: nil,
                                                deliveries: [PlannedDelivery(subscriptionId: subscription.id, orderKey: nil)]))
        dispatcher.notify(subscriptionIds: [subscription.id])
        return AdminJSON.response(.object([("event_id", .string(id))]), status: .accepted)
    }

    private func replay(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let subscription = try await existing(context)
        let body = try await JSONBody.read(request, allowed: ["since", "until", "status"])
        guard let since = try body.date("since") else { throw AdminError.badRequest("since is required (ISO 8601)") }
        let until = try body.date("until") ?? clock.now().addingTimeInterval(1)
        let status = try body.string("status").map { text -> DeliveryStatus in
            guard let status = DeliveryStatus(rawValue: text), status != .inFlight else {
                throw AdminError.badRequest("status must be one of pending, succeeded, failed, dead, cancelled")
            }
            return status
        }
        guard since < until else { throw AdminError.badRequest("since must be before until") }
        let count = try await store.replay(subscription: subscription, since: since, until: until, status: status, now: clock.now())
        dispatcher.notify(subscriptionIds: [subscription.id])
        return AdminJSON.response(.object([("replayed", .number(Double(count)))]), status: .accepted)
    }

    private func checkURL(_ url: String) async throws {
        do {
            let (_, parsed) = try egress.checkURL(url)
            if let problem = InputRules.credentialsProblem(in: parsed) { throw AdminError.badRequest("url: \(problem)") }
            try await egress.destination(url)
        } catch let error as EgressGuard.Refusal {
            throw AdminError.badRequest("url: \(error)")
        }
    }

    /// At most one reply endpoint per AppID.
    private func replyConflictCheck(_ subscription: Subscription) throws {
        guard subscription.reply, subscription.status == .enabled else { return }
        for other in registry.all where other.id != subscription.id && other.reply && other.status == .enabled {
            let overlap = other.appids.contains("*") || subscription.appids.contains("*")
                || !Set(other.appids).isDisjoint(with: subscription.appids)
            if overlap {
                throw AdminError.conflict("subscription \(other.id) is already the reply endpoint for these AppIDs; an AppID has at most one")
            }
        }
    }
}
