import Hummingbird
import Logging

/// What people and internal services change through `/v1` and the dashboard, one `info` line
/// each after the answer (`admin action method=DELETE path=/v1/subscriptions/crm status=204`):
/// who replayed, deleted or rotated what, and when, is asked after the fact. Bodies are not
/// logged (they carry secrets), nor reads, nor the WeChat API proxy (internal services' traffic,
/// not a change to the relay). A refused change (4xx, 5xx) is logged once a second per status at
/// most, and a refused admin token is a `notice`, once a second.
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
        // Signing out clears the browser's cookie and needs no token: anyone could write lines with it.
        guard request.method != .get, request.method != .head, !path.hasPrefix("/v1/wechat/"), !path.hasPrefix("/dashboard/sign-out") else { return }
        let metadata: Logger.Metadata = ["method": "\(request.method)", "path": .string(path), "status": "\(status.code)"]
        guard (200..<400).contains(status.code) else {
            // Changed nothing, and may come at a misbehaving client's rate (a fuzz run: 13,000
            // lines a minute): one line a second per status.
            refusals.log("admin action \(status.code)", .info, "admin action", metadata, to: context.logger)
            return
        }
        context.logger.info("admin action", metadata: metadata)
    }
}
