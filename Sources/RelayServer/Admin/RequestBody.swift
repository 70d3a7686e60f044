import Foundation
import Hummingbird

/// A JSON object from a request body, read field by field so that an unknown field or a wrong
/// type is a clear 400 naming the field.
struct JSONBody {
    private let object: [String: Any]

    static func read(_ request: Request, allowed: Set<String>, maxBytes: Int = 65_536) async throws -> JSONBody {
        let buffer = try await request.body.collect(upTo: maxBytes)
        if buffer.readableBytes == 0 { return JSONBody(object: [:]) }
        guard let parsed = try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)),
            let object = parsed as? [String: Any]
        else { throw AdminError.badRequest("the body must be a JSON object") }
        if let unknown = object.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw AdminError.badRequest("unknown field \(unknown); expected one of \(allowed.sorted().joined(separator: ", "))")
        }
        return JSONBody(object: object)
    }

    func has(_ key: String) -> Bool { object[key] != nil && !(object[key] is NSNull) }

    func string(_ key: String) throws -> String? {
        guard has(key) else { return nil }
        guard let value = object[key] as? String else { throw AdminError.badRequest("\(key) must be a string") }
        try ControlCharacters.check(value, key)
        return value
    }

    func strings(_ key: String) throws -> [String]? {
        guard has(key) else { return nil }
        guard let value = object[key] as? [String], !value.isEmpty else { throw AdminError.badRequest("\(key) must be a non-empty list of strings") }
        for item in value { try ControlCharacters.check(item, key) }
        return value
    }

    func bool(_ key: String) throws -> Bool? {
        guard has(key) else { return nil }
        // JSON booleans arrive as NSNumber of type "c"; the numbers 0 and 1 must not pass.
        guard let number = object[key] as? NSNumber, String(cString: number.objCType) == "c" else {
            throw AdminError.badRequest("\(key) must be true or false")
        }
        return number.boolValue
    }

    func date(_ key: String) throws -> Date? {
        guard let text = try string(key) else { return nil }
        guard let date = Date.fromISO8601(text) else { throw AdminError.badRequest("\(key) must be an ISO 8601 time such as 2026-11-22T08:00:00Z") }
        return date
    }

}

extension Date {
    /// Foundation's parser stops at the end of a time it recognizes and ignores what follows (it
    /// took `2026-11-22T08:00:00Zjunk`), and rolls fields over that are out of range (it took
    /// `12:99` as 13:39, and February 30th as March 2nd), so the whole text is matched and each
    /// field checked first.
    static func fromISO8601(_ text: String) -> Date? {
        let pattern = /(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?(?:Z|[+-](\d{2}):(\d{2}))/
        guard let match = text.wholeMatch(of: pattern),
              let year = Int(match.1), let month = Int(match.2), let day = Int(match.3),
              let hour = Int(match.4), let minute = Int(match.5), let second = Int(match.6),
              (1...12).contains(month), (0...23).contains(hour), (0...59).contains(minute), (0...59).contains(second),
              (0...23).contains(match.7.flatMap { Int($0) } ?? 0), (0...59).contains(match.8.flatMap { Int($0) } ?? 0) else { return nil }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        guard (1...days).contains(day) else { return nil }
        return (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text)) ?? (try? Date.ISO8601FormatStyle().parse(text))
    }
}
