import Hummingbird
import NIOCore
import WeChatXML

/// An admin API failure, answered as `{"error": {"code": "...", "message": "..."}}`.
struct AdminError: HTTPResponseError {
    let status: HTTPResponse.Status
    let code: String
    let message: String

    static func badRequest(_ message: String) -> AdminError { AdminError(status: .badRequest, code: "invalid_request", message: message) }
    static func notFound(_ what: String) -> AdminError { AdminError(status: .notFound, code: "not_found", message: "\(what) does not exist") }
    static func conflict(_ message: String) -> AdminError { AdminError(status: .conflict, code: "conflict", message: message) }
    static let unauthorized = AdminError(status: .unauthorized, code: "unauthorized",
                                         message: "send the admin token as `Authorization: Bearer <admin.token>`")
    static let disabled = AdminError(status: .notFound, code: "admin_api_off",
                                     message: "the admin API is off: set admin.token in relay.yml to turn it on")

    func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = JSONValue.object([("error", .object([("code", .string(code)), ("message", .string(message))]))])
        var response = AdminJSON.response(body, status: status)
        if status == .unauthorized { response.headers[.wwwAuthenticate] = "Bearer" }
        return response
    }
}

/// JSON answers of the admin API.
enum AdminJSON {
    static func response(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: value.serialized)))
    }

    /// `{"data": [...], "next_cursor": ...}`; the cursor is the last item's id when the page is full.
    static func list(_ items: [JSONValue], lastId: String?, limit: Int) -> Response {
        let cursor: JSONValue = items.count >= limit ? lastId.map(JSONValue.string) ?? .null : .null
        return response(.object([("data", .array(items)), ("next_cursor", cursor)]))
    }
}
