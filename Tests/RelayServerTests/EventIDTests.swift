import Foundation
import RelayCore
import Testing

/// Ids draw their random part from a pool refilled 512 bytes at a time.
@Suite struct EventIDTests {
    /// Many ids in the same millisecond, from concurrent tasks, across many refills of the pool:
    /// all distinct, all well-formed, all carrying that millisecond.
    @Test func idsAtTheSameInstantAreDistinctAcrossPoolRefills() async {
        let instant = Date(timeIntervalSince1970: 1_800_000_000.123)
        let ids = await withTaskGroup(of: [String].self) { group in
            for _ in 0..<8 { group.addTask { (0..<2_000).map { _ in EventID.make(at: instant) } } }
            return await group.reduce(into: [String]()) { $0 += $1 }
        }
        #expect(Set(ids).count == ids.count)
        let alphabet = Set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
        #expect(ids.allSatisfy { $0.hasPrefix("evt_") && $0.count == 30 && $0.dropFirst(4).allSatisfy(alphabet.contains) })
        // The first ten characters are the time: the same for all.
        #expect(Set(ids.map { $0.dropFirst(4).prefix(10) }).count == 1)
        // The random part is not stuck: every position of it takes many values.
        for position in 14..<30 {
            let values = Set(ids.map { $0[$0.index($0.startIndex, offsetBy: position)] })
            #expect(values.count > 16, "position \(position)")
        }
    }
}
