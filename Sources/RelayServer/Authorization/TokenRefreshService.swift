import Foundation
import Logging
import RelayCore
import ServiceLifecycle
import Synchronization

/// Keeps tokens fresh ahead of expiry: every minute, each active authorizer whose access token
/// expires within the refresh margin is refreshed (once at a time per AppID across nodes, via
/// `TokenService`; several AppIDs at once);
/// every six hours the authorizers are reconciled against WeChat's authorizer list.
struct TokenRefreshService: Service {
    let authorization: AuthorizationService
    let logger: Logger
    /// Authorizers whose last refreshes failed, and when to try again.
    let failing = FailingRefreshes()
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
        let active = authorizers.filter { $0.status == .active && $0.refreshToken != nil }
        failing.keepOnly(Set(active.map(\.appid)))
        var due = active.filter {
            !($0.accessToken?.isFresh(at: now, margin: tokens.refreshMargin) ?? false) && failing.mayTry($0.appid, at: now)
        }.map(\.appid).makeIterator()
        let (refreshed, failures) = await withTaskGroup(of: (String, (any Error)?).self) { group in
            for _ in 0..<concurrentRefreshes {
                guard let appid = due.next() else { break }
                group.addTask { await refresh(appid) }
            }
            var refreshed: [String] = []
            var failures: [(appid: String, error: any Error)] = []
            while let (appid, error) = await group.next() {
                if let error { failures.append((appid, error)) } else { refreshed.append(appid) }
                if let appid = due.next() { group.addTask { await refresh(appid) } }
            }
            return (refreshed.sorted(), failures.sorted { $0.appid < $1.appid })
        }
        for appid in refreshed { failing.succeeded(appid) }
        for failure in failures {
            let (inARow, wait) = failing.failed(failure.appid, at: now)
            // One line per authorizer and failure, at a pace that slows with the backoff.
            logger.error("authorizer token refresh failed", metadata: [
                "authorizer_appid": .string(failure.appid), "error": "\(failure.error)", "failures_in_a_row": "\(inARow)",
                "next_try_in_s": "\(Int(wait))",
            ])
        }
        return refreshed
    }

    private func refresh(_ appid: String) async -> (String, (any Error)?) {
        do {
            _ = try await authorization.tokens.authorizerToken(appid)
            return (appid, nil)
        } catch {
            return (appid, error)
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

/// Authorizers whose background refreshes keep failing wait before the next: a minute after the
/// first failure, doubling up to 30 minutes, back to every round after a success. A refresh token
/// that WeChat refuses for good (or an authorizer whose calls it blocks) was tried every minute
/// with an error line each time — up to two calls a minute against WeChat's daily quota, per
/// such authorizer. Asking for the token through the API still refreshes at once.
final class FailingRefreshes: Sendable {
    private let entries = Mutex<[String: Backoff]>([:])

    func mayTry(_ appid: String, at now: Date) -> Bool {
        entries.withLock { $0[appid]?.remaining(at: now) == nil }
    }

    /// Counts a failure at `now`; returns the failures in a row and the wait before the next try.
    func failed(_ appid: String, at now: Date) -> (Int, TimeInterval) {
        entries.withLock { entries in
            var backoff = entries[appid] ?? Backoff(first: 60, longest: 1800)
            let wait = backoff.failed(at: now)
            entries[appid] = backoff
            return (backoff.failures, wait)
        }
    }

    func succeeded(_ appid: String) {
        _ = entries.withLock { $0.removeValue(forKey: appid) }
    }

    /// Forgets authorizers that are gone or revoked.
    func keepOnly(_ appids: Set<String>) {
        entries.withLock { entries in entries = entries.filter { appids.contains($0.key) } }
    }
}
