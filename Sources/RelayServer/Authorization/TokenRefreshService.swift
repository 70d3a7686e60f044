import Foundation
import Logging
import RelayCore
import ServiceLifecycle

/// Keeps tokens fresh ahead of expiry: every minute, each active authorizer whose access token
/// expires within the refresh margin is refreshed (one at a time per AppID, via `TokenService`);
/// every six hours the authorizers are reconciled against WeChat's authorizer list.
struct TokenRefreshService: Service {
    let authorization: AuthorizationService
    let logger: Logger
    let interval: Duration = .seconds(60)
    let reconcileEvery = 360

    func run() async throws {
        var round = 0
        // Cancelled too when another service fails; see RetentionService.
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            await refreshDue()
            if round % reconcileEvery == reconcileEvery - 1 { await reconcile() }
            round += 1
            await cancelWhenGracefulShutdownOrReturn { try? await Task.sleep(for: interval) }
        }
    }

    /// Refreshes what is due now (by the injected clock); returns the AppIDs refreshed.
    @discardableResult
    func refreshDue() async -> [String] {
        let tokens = authorization.tokens
        let now = tokens.clock.now()
        guard let authorizers = try? await authorization.store.authorizers() else { return [] }
        var refreshed: [String] = []
        for authorizer in authorizers where authorizer.status == .active && authorizer.refreshToken != nil {
            guard !(authorizer.accessToken?.isFresh(at: now, margin: tokens.refreshMargin) ?? false) else { continue }
            do {
                _ = try await tokens.authorizerToken(authorizer.appid)
                refreshed.append(authorizer.appid)
            } catch {
                logger.error("authorizer token refresh failed", metadata: ["authorizer_appid": .string(authorizer.appid), "error": "\(error)"])
            }
        }
        return refreshed
    }

    func reconcile() async {
        for component in authorization.tokens.components.keys.sorted() {
            do {
                let recovered = try await authorization.sync(componentAppid: component)
                if recovered > 0 { logger.info("reconciled authorizers", metadata: ["component_appid": .string(component), "recovered": "\(recovered)"]) }
            } catch {
                logger.warning("authorizer reconcile failed", metadata: ["component_appid": .string(component), "error": "\(error)"])
            }
        }
    }
}
