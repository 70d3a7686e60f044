import Foundation
import WeChatXML

/// An event as the relay stores and delivers it: the subscriber envelope's fields plus what the
/// relay needs for dedup and ordering.
public struct RelayEvent: Sendable, Equatable {
    public let id: String
    /// `message.*`, `event.*`, `authorizer.*`, `component.verify_ticket` or `relay.ping`.
    public let type: String
    /// The account the event is about.
    public let appid: String
    public let componentAppid: String?
    public let receivedAt: Date
    /// `data` as compact JSON text (the lossless form of the decrypted XML).
    public let dataJSON: String
    /// Unique per AppID: `msg:<MsgId>` or `sha256:<hex of the decrypted XML>`.
    public let dedupKey: String
    /// The user (`FromUserName`) for ordered delivery; nil when the push has none.
    public let fromUser: String?

    public init(id: String, type: String, appid: String, componentAppid: String?, receivedAt: Date,
                dataJSON: String, dedupKey: String, fromUser: String?) {
        self.id = id
        self.type = type
        self.appid = appid
        self.componentAppid = componentAppid
        self.receivedAt = receivedAt
        self.dataJSON = dataJSON
        self.dedupKey = dedupKey
        self.fromUser = fromUser
    }

    /// The same event under another id (a duplicate push answered with the stored event's id).
    public func with(id: String) -> RelayEvent {
        RelayEvent(id: id, type: type, appid: appid, componentAppid: componentAppid, receivedAt: receivedAt, dataJSON: dataJSON,
                   dedupKey: dedupKey, fromUser: fromUser)
    }

    /// The exact JSON body subscribers receive (and that their signature covers).
    public var envelopeJSON: String {
        var out: [UInt8] = []
        out.reserveCapacity(160 + dataJSON.utf8.count)
        out += #"{"id":"#.utf8
        JSONValue.writeString(id, to: &out)
        out += #","type":"#.utf8
        JSONValue.writeString(type, to: &out)
        out += #","timestamp":"#.utf8
        JSONValue.writeString(Timestamp.iso8601Millis(receivedAt), to: &out)
        out += #","appid":"#.utf8
        JSONValue.writeString(appid, to: &out)
        out += #","component_appid":"#.utf8
        if let componentAppid { JSONValue.writeString(componentAppid, to: &out) } else { out += "null".utf8 }
        out += #","data":"#.utf8
        out += dataJSON.utf8
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }
}

/// The newest `component_verify_ticket` of a component.
public struct ComponentTicket: Sendable, Equatable {
    public let componentAppid: String
    public let ticket: String
    /// WeChat's `CreateTime` of the push that carried it (Unix seconds); orders tickets.
    public let createTime: Int64
    public let receivedAt: Date

    public init(componentAppid: String, ticket: String, createTime: Int64, receivedAt: Date) {
        self.componentAppid = componentAppid
        self.ticket = ticket
        self.createTime = createTime
        self.receivedAt = receivedAt
    }
}

/// Everything one push writes, committed atomically before WeChat gets `success`.
public struct IntakeRecord: Sendable, Equatable {
    /// The event to store (nil for a ticket nobody subscribes to).
    public var event: RelayEvent?
    /// A ticket to keep, if the push carried one (kept only if newer than the stored one).
    public var ticket: ComponentTicket?
    /// The deliveries to create with the event (only if the event is new, not a duplicate).
    public var deliveries: [PlannedDelivery]

    public init(event: RelayEvent?, ticket: ComponentTicket?, deliveries: [PlannedDelivery] = []) {
        self.event = event
        self.ticket = ticket
        self.deliveries = deliveries
    }
}

/// What committing an `IntakeRecord` did.
public enum IntakeOutcome: Sendable, Equatable {
    /// A new event with this id was stored.
    case stored(eventID: String)
    /// WeChat sent this push before; the event stored then has this id.
    case duplicate(eventID: String)
    /// Only a ticket was written.
    case ticketOnly
}

/// Timestamp formatting shared by events and the admin API.
public enum Timestamp {
    /// `2026-11-22T08:00:00.123Z`, to the nearest millisecond (as the store keeps times).
    ///
    /// Written out here: every delivery formats its event's time, `Date.ISO8601FormatStyle` (a
    /// calendar computation) was most of the cost of building the envelope, and it truncates —
    /// a time stored as …40.123 (not exact in binary) came out as …40.122. The tests hold the
    /// date and time of day to `ISO8601FormatStyle`.
    public static func iso8601Millis(_ date: Date) -> String {
        let millis = Int64((date.timeIntervalSince1970 * 1000).rounded())
        let (days, msOfDay) = millis.floorDividedBy(86_400_000)
        let (year, month, day) = civil(daysSinceEpoch: days)
        guard (0...9999).contains(year) else { return Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(date) }
        let seconds = msOfDay / 1000
        var out: [UInt8] = []
        out.reserveCapacity(24)
        func digits(_ value: Int64, _ count: Int) {
            var divisor: Int64 = 1
            for _ in 1..<count { divisor *= 10 }
            var rest = value
            while divisor > 0 {
                out.append(UInt8(ascii: "0") + UInt8(rest / divisor))
                rest %= divisor
                divisor /= 10
            }
        }
        digits(year, 4)
        out.append(UInt8(ascii: "-")); digits(month, 2)
        out.append(UInt8(ascii: "-")); digits(day, 2)
        out.append(UInt8(ascii: "T")); digits(seconds / 3600, 2)
        out.append(UInt8(ascii: ":")); digits(seconds / 60 % 60, 2)
        out.append(UInt8(ascii: ":")); digits(seconds % 60, 2)
        out.append(UInt8(ascii: ".")); digits(msOfDay % 1000, 3)
        out.append(UInt8(ascii: "Z"))
        return String(decoding: out, as: UTF8.self)
    }

    /// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's
    /// `civil_from_days`).
    static func civil(daysSinceEpoch: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = daysSinceEpoch + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    /// `2026-11-22T08:00:00Z`.
    public static func iso8601(_ date: Date) -> String {
        Date.ISO8601FormatStyle().format(date)
    }
}

private extension Int64 {
    /// Quotient and remainder rounded toward negative infinity (times before 1970).
    func floorDividedBy(_ divisor: Int64) -> (quotient: Int64, remainder: Int64) {
        let (q, r) = quotientAndRemainder(dividingBy: divisor)
        return r < 0 ? (q - 1, r + divisor) : (q, r)
    }
}
