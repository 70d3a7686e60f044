import AsyncHTTPClient
import ServiceLifecycle

/// Owns the outbound HTTP client: listed before its users, it shuts the client down after they stop.
struct HTTPClientService: Service {
    let client: HTTPClient

    func run() async throws {
        await cancelWhenGracefulShutdownOrReturn { try? await Task.sleep(for: .seconds(86_400 * 365)) }
        try await client.shutdown()
    }
}
