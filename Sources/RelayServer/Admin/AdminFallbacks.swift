import Hummingbird

/// The admin API's answers to requests no route takes, in its JSON error shape — Hummingbird
/// answers both kinds with an empty 404: a method a path does not have is a 405 naming those it
/// has (`Allow`), and a path under `/v1` that does not exist is a 404 pointing at the OpenAPI
/// document. The token is checked first, as on every admin route.
struct AdminFallbacks: RouterMiddleware {
    /// The admin routes' path templates (`{capture}` one segment, `**` the rest) and methods.
    let routes: [(template: [Substring], methods: Set<HTTPRequest.Method>)]
    let auth: AdminAuthMiddleware<RelayRequestContext>

    /// Adds the fallbacks to `router`. Call it after every other route: it reads the routes
    /// registered so far, and a router's middleware wraps only the routes added after it — here
    /// none but the not-found answer, so matched requests (WeChat's pushes above all) do not
    /// pass through it.
    static func register(on router: Router<RelayRequestContext>, adminToken: String?) {
        var methodsByPath: [String: Set<HTTPRequest.Method>] = [:]
        for route in router.routes where route.path.description.hasPrefix("/v1/") {
            methodsByPath[route.path.description, default: []].insert(route.method)
        }
        router.add(middleware: AdminFallbacks(
            routes: methodsByPath.map { (path, methods) in
                // The router answers HEAD with the GET route.
                (path.split(separator: "/"), methods.contains(.get) ? methods.union([.head]) : methods)
            },
            auth: AdminAuthMiddleware(token: adminToken)))
    }

    func handle(_ request: Request, context: RelayRequestContext,
                next: (Request, RelayRequestContext) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound && (request.uri.path == "/v1" || request.uri.path.hasPrefix("/v1/")) {
            return try await auth.handle(request, context: context) { request, context in
                let path = request.uri.path
                guard let methods = methods(for: path) else {
                    throw AdminError(status: .notFound, code: "not_found",
                                     message: "the admin API has no route \(path); its routes are listed in /v1/openapi.yaml")
                }
                let allow = Self.order.filter(methods.contains).map(\.rawValue).joined(separator: ", ")
                var response = try AdminError(status: .methodNotAllowed, code: "method_not_allowed",
                                              message: "\(request.method.rawValue) is not allowed on \(path); use \(allow)")
                    .response(from: request, context: context)
                response.headers[.allow] = allow
                return response
            }
        }
    }

    /// The order `Allow` lists methods in.
    static let order: [HTTPRequest.Method] = [.get, .head, .post, .put, .patch, .delete]

    /// The methods of the route whose template matches `path`, or nil when none does. As in the
    /// router, a literal segment wins over a capture, and a capture over `**`
    /// (`/v1/authorizers/sync` is that route, not `/v1/authorizers/{appid}`).
    func methods(for path: String) -> Set<HTTPRequest.Method>? {
        let segments = path.split(separator: "/")
        return routes.filter { Self.matches(segments, $0.template) }
            .max { Self.specificity($0.template).lexicographicallyPrecedes(Self.specificity($1.template)) }?.methods
    }

    static func specificity(_ template: [Substring]) -> [Int] {
        template.map { $0 == "**" ? 0 : $0.hasPrefix("{") ? 1 : 2 }
    }

    static func matches(_ segments: [Substring], _ template: [Substring]) -> Bool {
        for (index, part) in template.enumerated() {
            if part == "**" { return segments.count > index }
            guard index < segments.count, part.hasPrefix("{") || part == segments[index] else { return false }
        }
        return segments.count == template.count
    }
}
