import Foundation
import Logging
@testable import RelayServer
import Synchronization
import Testing

@Suite struct JSONLogHandlerTests {
    final class Lines: Sendable {
        let all = Mutex<[String]>([])
        func object(_ index: Int) throws -> [String: Any] {
            let line = all.withLock { $0[index] }
            return try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
        }
    }

    @Test func eachLineIsOneJSONObjectWithTheFixedFieldsAndTheMetadata() throws {
        let lines = Lines()
        var logger = Logger(label: "relay") { label in JSONLogHandler(label: label) { line in lines.all.withLock { $0.append(line) } } }
        logger[metadataKey: "node"] = "a"
        logger.notice("push refused\n\"quoted\"", metadata: [
            "reason": "bad \\ signature", "count": "\(3)", "message": "dropped: the fixed key wins",
            "nested": ["list": ["x", "y"], "n": .stringConvertible(42)],
        ])
        logger.debug("below the level: not written")
        #expect(lines.all.withLock { $0.count } == 1)
        let line = lines.all.withLock { $0[0] }
        #expect(line.hasSuffix("}\n") && line.dropLast().allSatisfy { $0 != "\n" }, "one line: \(line)")
        #expect(line.hasPrefix("{\"time\":\""), "the time first: \(line)")
        let object = try lines.object(0)
        #expect(object["level"] as? String == "notice")
        #expect(object["label"] as? String == "relay")
        #expect(object["message"] as? String == "push refused\n\"quoted\"")
        #expect(object["reason"] as? String == "bad \\ signature")
        #expect(object["node"] as? String == "a")
        #expect(object["count"] as? String == "3")
        let nested = try #require(object["nested"] as? [String: Any])
        #expect(nested["list"] as? [String] == ["x", "y"] && nested["n"] as? String == "42")
        let time = try #require(object["time"] as? String)
        #expect(time.hasSuffix("Z") && time.count == "2026-11-24T13:47:07.123Z".count, "\(time)")
        #expect(abs(try #require(ISO8601DateFormatter.withMillis.date(from: time)).timeIntervalSinceNow) < 60)
    }
}

extension ISO8601DateFormatter {
    static var withMillis: ISO8601DateFormatter {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }
}
