import Synchronization

/// Wakes one waiting loop: `ring()` from anywhere, `wait(upTo:)` in the loop. A ring with nobody
/// waiting is remembered (once), so a wake-up between two waits is never lost.
final class Doorbell: Sendable {
    private struct State {
        var rung = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    func ring() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.rung = true
            return nil
        }
        waiter?.resume()
    }

    /// Returns when rung or on cancellation.
    func wait() async {
        if takeRing() { return }
        await waitForRing()
    }

    /// Returns when rung, after `timeout`, or on cancellation, whichever comes first; true when rung.
    @discardableResult
    func wait(upTo timeout: Duration) async -> Bool {
        if takeRing() { return true }
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await self.waitForRing()
                return !Task.isCancelled
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let rung = await group.next() ?? false
            group.cancelAll()
            return rung
        }
    }

    private func takeRing() -> Bool {
        state.withLock { state in
            defer { state.rung = false }
            return state.rung
        }
    }

    private func waitForRing() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state -> Bool in
                    if state.rung || Task.isCancelled {
                        state.rung = false
                        return true
                    }
                    state.waiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume()
        }
    }
}
