import Foundation
import Logging
import RelayCore

/// The durable half of intake: a verified push becomes an event and is committed. Returning
/// means the event (or ticket) is on disk, so WeChat may be told `success`.
struct PushIntake: Sendable {
    let store: any RelayStore
    let registry: SubscriptionRegistry
    /// Called after a commit that created deliveries, with their subscriptions.
    let deliveriesCreated: @Sendable ([String]) -> Void
    /// Follows authorization pushes (code exchange, revocation) once they are stored.
    let followUps: AuthorizationFollowUps

    /// Commits the push — event, ticket and the deliveries of every matching subscription, in one
    /// transaction — and returns what happened, with the event (nil for a ticket-only push).
    func accept(_ push: VerifiedPush) async throws -> (IntakeOutcome, RelayEvent?) {
        // Ticket pushes become events only when a subscription names component.verify_ticket.
        var record = EventBuilder.record(for: push, id: EventID.make(at: push.receivedAt),
                                         storeTicketEvent: registry.wantsTicketEvents)
        if let event = record.event { record.deliveries = PlannedDelivery.plan(for: event, subscriptions: registry.all) }
        let outcome = try await store.commit(record)
        if case .stored = outcome, !record.deliveries.isEmpty { deliveriesCreated(record.deliveries.map(\.subscriptionId)) }
        if case .stored = outcome, let event = record.event, event.type.hasPrefix("authorizer.") {
            await followUps.follow(event, root: push.root)
        }
        return (outcome, record.event)
    }
}

extension IntakeOutcome {
    /// The `outcome` label of `relay_pushes_total`.
    var metricLabel: String {
        switch self {
        case .stored: "stored"
        case .duplicate: "duplicate"
        case .ticketOnly: "ticket"
        }
    }
}

extension IntakeRejection {
    /// The one place rejections map to HTTP statuses: every one is a 4xx.
    var status: HTTPStatusCode {
        switch self {
        case .missingParameter, .malformedBody, .undecryptable, .wrongReceiver, .plaintextNotAllowed: .badRequest
        case .badSignature, .staleTimestamp: .unauthorized
        case .unknownComponent, .unknownAccount: .notFound
        case .tooLarge: .contentTooLarge
        }
    }
}

/// The statuses intake answers with, kept free of the HTTP framework's types.
enum HTTPStatusCode: Int {
    case badRequest = 400, unauthorized = 401, notFound = 404, contentTooLarge = 413
}
