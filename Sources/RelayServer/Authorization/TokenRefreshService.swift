import Foundation
import Logging
import RelayCore
import ServiceLifecycle

/// Keeps tokens fresh ahead of expiry: every minute, each active authorizer whose access token
/// expires within the refresh margin is refreshed (once at a time per AppID across nodes, via
/// `TokenService`; several AppIDs at once);
/// every six hours the authorizers are reconciled against WeChat's authorizer list.
struct TokenRefreshService: Service {
    let authorization: AuthorizationService
    let logger: Logger
    let interval: Duration = .seconds(60)
    let reconcileEvery = 360
    /// Refreshes under way at once. One at a time, each cost a round trip to WeChat: at 200 ms,
    /// 300 a minute, fewer than a platform with tens of thousands of authorizers has due (every
    /// token lives two hours), and after the relay was down, the backlog took hours while the
    /// tokens it held expired. WeChat limits calls per day, not per moment.
    let concurrentRefreshes = 8

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

    /// Refreshes what is due now (by the injected clock), `concurrentRefreshes` at a time;
    /// returns the AppIDs refreshed, sorted.
    @discardableResult
    func refreshDue() async -> [String] {
        let tokens = authorization.tokens
        let now = tokens.clock.now()
        guard let authorizers = try? await authorization.store.authorizers() else { return [] }
        var due = authorizers.filter {
            $0.status == .active && $0.refreshToken != nil && !($0.accessToken?.isFresh(at: now, margin: tokens.refreshMargin) ?? false)
        }.map(\.appid).makeIterator()
        return await withTaskGroup(of: String?.self) { group in
            for _ in 0..<concurrentRefreshes {
                guard let appid = due.next() else { break }
                group.addTask { await refresh(appid) }
            }
            var refreshed: [String] = []
            while let result = await group.next() {
                if let appid = result { refreshed.append(appid) }
                if let appid = due.next() { group.addTask { await refresh(appid) } }
            }
            return refreshed.sorted()
        }
    }

    private func refresh(_ appid: String) async -> String? {
        do {
            _ = try await authorization.tokens.authorizerToken(appid)
            return appid
        } catch {
            logger.error("authorizer token refresh failed", metadata: ["authorizer_appid": .string(appid), "error": "\(error)"])
            return nil
        }
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
