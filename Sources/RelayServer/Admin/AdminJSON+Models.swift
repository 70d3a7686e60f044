import Foundation
import RelayCore
import WeChatXML

/// The admin API's answer shapes (spec "Answer shapes"): field names are the contract.
extension AdminJSON {
    static func subscription(_ s: Subscription, secret: Bool = false, circuit: CircuitBreaker.Snapshot? = nil,
                             backlog: QueueStats? = nil) -> JSONValue {
        var members: [(String, JSONValue)] = [
            ("id", .string(s.id)), ("url", .string(s.url)), ("appids", .array(s.appids.map(JSONValue.string))),
            ("events", .array(s.events.map(JSONValue.string))), ("reply", .bool(s.reply)), ("ordered", .bool(s.ordered)),
            ("status", .string(s.status.rawValue)), ("source", .string(s.source.rawValue)),
            ("created_at", .string(Timestamp.iso8601(s.createdAt))),
        ]
        if let circuit {
            members.append(("circuit", .object([
                ("open", .bool(circuit.open)), ("failed_in_a_row", .number(Double(circuit.failedInARow))),
                ("next_probe_at", circuit.nextProbe.map { .string(Timestamp.iso8601($0)) } ?? .null),
            ])))
        }
        if let backlog {
            members.append(("backlog", .object([
                ("waiting", .number(Double(backlog.depth))),
                ("oldest_created_at", backlog.oldestPendingCreatedAt.map { .string(Timestamp.iso8601($0)) } ?? .null),
            ])))
        }
        if secret { members.append(("secret", .string(s.secret))) }
        return .object(members)
    }

    /// The envelope subscribers receive, plus each delivery with its attempts.
    static func event(_ event: RelayEvent, deliveries: [(DeliveryRecord, [DeliveryAttempt])]) -> JSONValue {
        .object([
            ("id", .string(event.id)), ("type", .string(event.type)), ("timestamp", .string(Timestamp.iso8601Millis(event.receivedAt))),
            ("appid", .string(event.appid)), ("component_appid", event.componentAppid.map(JSONValue.string) ?? .null),
            ("data", .raw(event.dataJSON)),
            ("deliveries", .array(deliveries.map { delivery($0.0, attempts: $0.1, withEvent: false) })),
        ])
    }

    static func delivery(_ d: DeliveryRecord, attempts: [DeliveryAttempt], withEvent: Bool = true) -> JSONValue {
        var members: [(String, JSONValue)] = [("id", .string(d.id))]
        if withEvent { members.append(("event_id", .string(d.eventId))) }
        members += [
            ("subscription_id", .string(d.subscriptionId)), ("status", .string(d.status.rawValue)),
            ("next_attempt_at", d.nextAttemptAt.map { .string(Timestamp.iso8601Millis($0)) } ?? .null),
            ("attempts", .array(attempts.map(attempt))),
        ]
        return .object(members)
    }

    static func attempt(_ a: DeliveryAttempt) -> JSONValue {
        .object([
            ("at", .string(Timestamp.iso8601Millis(a.at))), ("status_code", a.statusCode.map { .number(Double($0)) } ?? .null),
            ("error", a.error.map(JSONValue.string) ?? .null), ("duration_ms", .number(Double(a.durationMs))),
            ("response", a.responseExcerpt.map(JSONValue.string) ?? .null),
        ])
    }
}
