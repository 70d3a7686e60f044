import Foundation
import Hummingbird
import RelayCore

/// Control characters (C0, DEL, C1) in what a caller sends are refused where they are read, with
/// a 400 that names where they were. None belongs in an id, a URL, an AppID or an event type, and
/// NUL reached the store otherwise: PostgreSQL's text refuses it, so it came back as a 500 there,
/// and SQLite kept it.
enum ControlCharacters {
    static func first(in text: some StringProtocol) -> Unicode.Scalar? {
        text.unicodeScalars.first(where: InputRules.isControl)
    }

    static func check(_ text: some StringProtocol, _ place: String) throws(AdminError) {
        guard let scalar = first(in: text) else { return }
        let code = String(scalar.value, radix: 16, uppercase: true)
        throw AdminError.badRequest("\(place) must not contain control characters (found U+\(String(repeating: "0", count: max(0, 4 - code.count)) + code))")
    }
}

/// The same refusal for a request's path and query parameters (of `/v1`, the dashboard and
/// onboarding), before any route reads them. Only a percent escape can carry a control character
/// in a request line (HTTP parsing refuses raw ones), so a URI without a suspicious escape costs
/// one scan.
struct ControlCharacterMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if Self.mayHoldControlCharacters(request.uri.string.utf8) {
            let path = request.uri.path
            try ControlCharacters.check(path.removingPercentEncoding ?? path, "the path")
            for (name, value) in request.uri.queryParameters {
                try ControlCharacters.check(name, "a query parameter's name")
                try ControlCharacters.check(value, "query parameter \(name)")
            }
        }
        return try await next(request, context)
    }

    /// Whether `uri` has an escape `%0x`, `%1x`, `%7F` or `%C2` (the lead byte of C1 in UTF-8;
    /// the check that follows decodes and looks precisely).
    static func mayHoldControlCharacters(_ uri: String.UTF8View) -> Bool {
        var bytes = uri.makeIterator()
        while let byte = bytes.next() {
            guard byte == UInt8(ascii: "%") else { continue }
            guard let high = bytes.next(), let low = bytes.next() else { return false }
            switch (high, low | 0x20) {
            case (UInt8(ascii: "0"), _), (UInt8(ascii: "1"), _), (UInt8(ascii: "7"), UInt8(ascii: "f")): return true
            case (UInt8(ascii: "C"), UInt8(ascii: "2")), (UInt8(ascii: "c"), UInt8(ascii: "2")): return true
            default: continue
            }
        }
        return false
    }
}
