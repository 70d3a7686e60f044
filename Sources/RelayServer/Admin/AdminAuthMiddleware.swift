import Hummingbird
import WeChatCrypto

/// Guards `/v1`: `Authorization: Bearer <admin.token>`, compared in constant time. Without a
/// configured token the admin API is off (every route answers 404), never open.
struct AdminAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let token else { throw AdminError.disabled }
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer "),
            constantTimeEquals(Array(header.dropFirst(7).utf8), Array(token.utf8))
        else { throw AdminError.unauthorized }
        return try await next(request, context)
    }
}
