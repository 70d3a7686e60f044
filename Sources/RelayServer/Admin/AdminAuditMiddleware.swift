import Hummingbird
import Logging

/// What people and internal services change through `/v1` and the dashboard, one `info` line
/// each after the answer (`admin action method=DELETE path=/v1/subscriptions/crm status=204`):
/// who replayed, deleted or rotated what, and when, is asked after the fact. Bodies are not
/// logged (they carry secrets), nor reads, nor the WeChat API proxy (internal services' traffic,
/// not a change to the relay). Refused admin tokens get a `notice`, once a second at most.
struct AdminAuditMiddleware<Context: RequestContext>: RouterMiddleware {
    let refusals: LogThrottle

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        guard path.hasPrefix("/v1/") || path.hasPrefix("/dashboard/") else { return try await next(request, context) }
        do {
            let response = try await next(request, context)
            record(request, path: path, status: response.status, context)
            return response
        } catch {
            record(request, path: path, status: (error as? any HTTPResponseError)?.status ?? .internalServerError, context)
            throw error
        }
    }

    private func record(_ request: Request, path: String, status: HTTPResponse.Status, _ context: Context) {
        if status == .unauthorized {
            // The dashboard logs its own refused sign-ins (and answers 401 with its form to a new visitor).
            if path.hasPrefix("/v1/") {
                refusals.log("admin token refused", .notice, "admin request refused: wrong or missing admin token",
                             ["method": "\(request.method)", "path": .string(path)], to: context.logger)
            }
            return
        }
        guard request.method != .get, request.method != .head, !path.hasPrefix("/v1/wechat/") else { return }
        context.logger.info("admin action", metadata: ["method": "\(request.method)", "path": .string(path), "status": "\(status.code)"])
    }
}
