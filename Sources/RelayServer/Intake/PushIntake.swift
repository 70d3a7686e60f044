import Foundation
import Logging
import RelayCore

/// The durable half of intake: a verified push becomes an event and is committed. Returning
/// means the event (or ticket) is on disk, so WeChat may be told `success`.
struct PushIntake: Sendable {
    let store: any RelayStore
    /// Whether any subscription names `component.verify_ticket` explicitly (only then are ticket
    /// pushes stored as events; the ticket itself is always kept).
    let storeTicketEvents: Bool

    /// Commits the push and returns what happened, with the event as stored (nil for ticket-only).
    func accept(_ push: VerifiedPush) async throws -> (IntakeOutcome, RelayEvent?) {
        let record = EventBuilder.record(for: push, id: EventID.make(at: push.receivedAt), storeTicketEvent: storeTicketEvents)
        let outcome = try await store.commit(record)
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
