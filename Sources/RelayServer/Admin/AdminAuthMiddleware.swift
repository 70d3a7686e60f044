import Hummingbird
import WeChatCrypto

/// Guards `/v1`: `Authorization: Bearer <admin.token>`, compared in constant time. Without a
/// configured token the admin API is off (every route answers 404), never open.
struct AdminAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let token else { throw AdminError.disabled }
        guard BearerToken.matches(token, in: request) else { throw AdminError.unauthorized }
        return try await next(request, context)
    }
}

/// The admin token as a bearer header: the admin API and the dashboard both accept it.
enum BearerToken {
    /// Whether `request` has `Authorization: Bearer <token>`, compared in constant time.
    static func matches(_ token: String, in request: Request) -> Bool {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else { return false }
        return constantTimeEquals(Array(header.dropFirst(7).utf8), Array(token.utf8))
    }
}
