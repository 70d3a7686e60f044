import NIOCore
@testable import RelayStore
import Synchronization
import RelayCore
import Testing

/// Group commit: items that may wait let the leader linger for company; anything else, or a full
/// batch, ends the lingering at once.
@Suite(.timeLimit(.minutes(1))) struct GroupCommitterTests {
    /// Records each group it is asked to commit.
    final class Groups: Sendable {
        let seen = Mutex<[[String]]>([])
        func flush(_ items: [String]) -> [Result<String, any Error>] {
            seen.withLock { $0.append(items) }
            return items.map { .success($0) }
        }
    }

    /// A committer whose linger timers `timers` holds (they never fire by themselves).
    static func committer(_ groups: Groups, maxBatch: Int = 256, timers: Timers) -> GroupCommitter<String, String> {
        GroupCommitter(maxBatch: maxBatch, linger: .hours(1), mayWait: { $0.hasPrefix("record") }, timer: timers.timer) { groups.flush($0) }
    }

    /// The linger is an hour: only the claim's arrival can end it within the time limit.
    @Test func anItemThatMayNotWaitEndsTheLingeringAtOnce() async throws {
        let groups = Groups(), timers = Timers()
        let committer = Self.committer(groups, timers: timers)
        try await withThrowingTaskGroup(of: String.self) { group in
            group.addTask { try await committer.submit("record 1") }
            await timers.started(1)
            group.addTask { try await committer.submit("claim") }
            let first = try await group.next(), second = try await group.next()
            #expect(Set([first, second]) == ["record 1", "claim"])
        }
        #expect(groups.seen.withLock { $0 } == [["record 1", "claim"]])
    }

    @Test func aFullBatchEndsTheLingering() async throws {
        let groups = Groups(), timers = Timers()
        let committer = Self.committer(groups, maxBatch: 4, timers: timers)
        try await withThrowingTaskGroup(of: String.self) { group in
            group.addTask { try await committer.submit("record 0") }
            await timers.started(1)
            for i in 1...3 { group.addTask { try await committer.submit("record \(i)") } }
            for try await _ in group {}
        }
        #expect(groups.seen.withLock { $0.map { Set($0) } } == [["record 0", "record 1", "record 2", "record 3"]])
    }

    @Test func aLoneRecordIsCommittedWhenTheLingerEnds() async throws {
        let groups = Groups()
        let committer = GroupCommitter<String, String>(linger: .milliseconds(5), mayWait: { $0.hasPrefix("record") }) { groups.flush($0) }
        #expect(try await committer.submit("record") == "record")
        #expect(groups.seen.withLock { $0 } == [["record"]])
    }

    /// Linger timers started by the committer, fired by hand.
    /// A timer starts right after its leader begins to linger, so a start tells a test the
    /// committer lingers.
    final class Timers: Sendable {
        let fires = Mutex<[@Sendable () -> Void]>([])
        let (starts, announce) = AsyncStream.makeStream(of: Int.self)
        var timer: GroupCommitter<String, String>.Timer {
            { _, fire in self.announce.yield(self.fires.withLock { $0.append(fire); return $0.count }) }
        }
        func fire(_ index: Int) { fires.withLock { $0[index] }() }
        /// Returns once `count` timers have started.
        func started(_ count: Int) async {
            guard fires.withLock({ $0.count }) < count else { return }
            for await started in starts where started >= count { return }
        }
    }

    /// The first linger is ended early by a claim, so its timer is still pending when the second
    /// record lingers: firing it must leave the second linger alone (it used to end it).
    @Test func aTimerLeftFromAnEarlierLingerDoesNotEndALaterOne() async throws {
        let groups = Groups(), timers = Timers()
        let committer = GroupCommitter<String, String>(linger: .hours(1), mayWait: { $0.hasPrefix("record") }, timer: timers.timer) {
            groups.flush($0)
        }
        try await withThrowingTaskGroup(of: String.self) { group in
            group.addTask { try await committer.submit("record 1") }
            await timers.started(1)
            group.addTask { try await committer.submit("claim") }
            _ = try await group.next()
            _ = try await group.next()
            group.addTask { try await committer.submit("record 2") }
            await timers.started(2)
            timers.fire(0)
            #expect(committer.isLingering, "the first linger's timer ended the second linger")
            timers.fire(1)
            #expect(try await group.next() == "record 2")
        }
        #expect(groups.seen.withLock { $0.map { Set($0) } } == [["record 1", "claim"], ["record 2"]])
    }

    @Test func withoutRecordsNobodyLingers() async throws {
        let groups = Groups(), timers = Timers()
        let committer = Self.committer(groups, timers: timers)
        #expect(try await committer.submit("claim") == "claim")
        #expect(try await committer.submit("intake") == "intake")
        #expect(groups.seen.withLock { $0 } == [["claim"], ["intake"]])
    }

    /// Past `maxPending` queued writers a write is refused at once (the store answers 503 upstream)
    /// rather than queued without bound.
    @Test func pastMaxPendingAWriteIsRefusedAtOnce() async throws {
        let (gate, open) = AsyncStream.makeStream(of: Void.self)
        let (flushing, flushStarted) = AsyncStream.makeStream(of: Void.self)
        let groups = Groups()
        let committer = GroupCommitter<String, String>(maxPending: 2) { items in
            if items == ["first"] {
                flushStarted.yield()
                for await _ in gate { break }
            }
            return groups.flush(items)
        }
        try await withThrowingTaskGroup(of: String.self) { group in
            group.addTask { try await committer.submit("first") }
            for await _ in flushing { break }
            group.addTask { try await committer.submit("second") }
            group.addTask { try await committer.submit("third") }
            while committer.pending < 2 { await Task.yield() }
            await #expect(throws: StoreError.self) { try await committer.submit("fourth") }
            open.yield()
            var answered: Set<String> = []
            for try await answer in group { answered.insert(answer) }
            #expect(answered == ["first", "second", "third"])
        }
        #expect(groups.seen.withLock { $0.map { Set($0) } } == [["first"], ["second", "third"]])
    }
}
