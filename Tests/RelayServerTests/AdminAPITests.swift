import Crypto
import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import Logging
import RelayCore
import RelayServer
import RelayTestSupport
import Testing

@Suite struct AdminAPITests {
    static let token = "admin-token-0123456789"

    static func yaml(allowPrivate: Bool = true, subscriptions: String = "", schedule: String = "[10ms, 10ms]") -> String {
        """
        admin:
          token: \(token)
        delivery:
          retry_schedule: \(schedule)
          allow_private_networks: \(allowPrivate)
        subscriptions:\(subscriptions.isEmpty ? " []" : "\n" + subscriptions)
        """
    }

    /// Sends an authorized admin request and returns the status and the parsed JSON.
    static func call(_ client: some TestClientProtocol, _ method: HTTPRequest.Method, _ uri: String, json: String? = nil,
                     token: String? = token) async throws -> (status: Int, body: [String: Any]) {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let token { headers[.authorization] = "Bearer \(token)" }
        return try await client.execute(uri: uri, method: method, headers: headers, body: json.map { ByteBuffer(string: $0) }) {
            let text = String(buffer: $0.body)
            let parsed = text.isEmpty ? [:] : (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]) ?? ["raw": text]
            return (Int($0.status.code), parsed)
        }
    }

    static func errorCode(_ body: [String: Any]) -> String? { (body["error"] as? [String: Any])?["code"] as? String }

    @Test func withoutATokenTheAdminAPIIsOff() async throws {
        try await TestRelay.with { relay in
            try await relay.application().test(.router) { client async throws in
                let answer = try await Self.call(client, .get, "/v1/subscriptions")
                #expect(answer.status == 404)
                #expect(Self.errorCode(answer.body) == "admin_api_off")
            }
        }
    }

    /// Changes through the admin API are logged, one line each with what and how it ended, never
    /// their bodies; reads and the WeChat API proxy are not; refused tokens once a second.
    @Test func changesAreLoggedWithoutTheirBodies() async throws {
        try await TestRelay.with(extraYAML: Self.yaml()) { relay in
            let logs = CapturedLogs()
            try await relay.application(logger: Logger(label: "relay") { _ in logs.handler() }, logThrottleInterval: 600)
                .test(.router) { client async throws in
                let created = try await Self.call(client, .post, "/v1/subscriptions", json: #"{"id": "audit", "url": "http://127.0.0.1:9/"}"#)
                let secret = try #require(created.body["secret"] as? String)
                _ = try await Self.call(client, .get, "/v1/subscriptions")
                for _ in 0..<3 { _ = try await Self.call(client, .post, "/v1/subscriptions", json: #"{"url": "ftp://nowhere"}"#) }  // one line
                _ = try await Self.call(client, .post, "/v1/wechat/wx1111111111111111/cgi-bin/message/custom/send", json: "{}")
                _ = try await Self.call(client, .delete, "/v1/subscriptions/audit")
                // Anyone may sign out (it clears a cookie): not a line.
                #expect(try await client.execute(uri: "/dashboard/sign-out", method: .post) { $0.status } == .seeOther)
                for _ in 0..<3 { _ = try await Self.call(client, .delete, "/v1/subscriptions/audit", token: "guess-guess-guess-guess") }
                let actions = logs.lines.filter { $0.contains("admin action") }
                #expect(actions == [
                    "info admin action method=POST path=/v1/subscriptions status=201",
                    "info admin action method=POST path=/v1/subscriptions status=400",
                    "info admin action method=DELETE path=/v1/subscriptions/audit status=204",
                ], "\(logs.lines)")
                #expect(logs.lines.filter { $0.contains("admin request refused") }.count == 1, "\(logs.lines)")
                #expect(!logs.lines.contains { $0.contains(secret) })
            }
        }
    }

    /// A subscription shows its backlog: how many deliveries are unfinished, and since when.
    @Test func aSubscriptionShowsItsBacklog() async throws {
        try await TestRelay.with(extraYAML: Self.yaml(subscriptions: "  - id: crm\n    url: http://127.0.0.1:9/hook")) { relay in
            // The router alone: no dispatcher runs, so a push waits.
            try await relay.application().test(.router) { client async throws in
                let empty = try await Self.call(client, .get, "/v1/subscriptions/crm")
                #expect(empty.body["backlog"] as? [String: Any] != nil)
                #expect((empty.body["backlog"] as? [String: Any])?["waiting"] as? Int == 0)
                #expect((empty.body["backlog"] as? [String: Any])?["oldest_created_at"] is NSNull)
                _ = try await client.send(relay.textPush())
                let one = try await Self.call(client, .get, "/v1/subscriptions/crm")
                let backlog = try #require(one.body["backlog"] as? [String: Any])
                #expect(backlog["waiting"] as? Int == 1)
                let oldest = try #require(ISO8601DateFormatter().date(from: backlog["oldest_created_at"] as? String ?? ""))
                #expect(abs(oldest.timeIntervalSince(relay.clock.now())) < 1)  // whole seconds
                let list = try await Self.call(client, .get, "/v1/subscriptions")
                let listed = (list.body["data"] as? [[String: Any]])?.first { $0["id"] as? String == "crm" }
                #expect((listed?["backlog"] as? [String: Any])?["waiting"] as? Int == 1)
            }
        }
    }

    @Test func wrongOrMissingTokenIsRefused() async throws {
        try await TestRelay.with(extraYAML: Self.yaml()) { relay in
            try await relay.application().test(.router) { client async throws in
                #expect(try await Self.call(client, .get, "/v1/subscriptions", token: nil).status == 401)
                let wrong = try await Self.call(client, .get, "/v1/subscriptions", token: "admin-token-0123456788")
                #expect(wrong.status == 401)
                #expect(Self.errorCode(wrong.body) == "unauthorized")
                #expect(try await Self.call(client, .get, "/v1/subscriptions").status == 200)
            }
        }
    }

    /// Requests no route takes get the API's JSON errors (Hummingbird answered both with an empty
    /// 404): another method on a known path is a 405 with `Allow`, an unknown path under /v1 a
    /// 404 naming it; HEAD works where GET does; the token is still checked first.
    @Test func unroutedRequestsGetJSONErrorsAndMethodsTheirAllowHeader() async throws {
        try await TestRelay.with(extraYAML: Self.yaml(subscriptions: "  - id: fromconfig\n    url: http://127.0.0.1:9/x")) { relay in
            try await relay.application().test(.live) { client async throws in
                let bearer: HTTPFields = [.authorization: "Bearer \(Self.token)"]
                try await client.execute(uri: "/v1/events", method: .delete, headers: bearer) { response in
                    #expect(response.status == .methodNotAllowed)
                    #expect(response.headers[.allow] == "GET, HEAD")
                    #expect(response.headers[.contentType] == "application/json")
                    #expect(String(buffer: response.body).contains(#""code":"method_not_allowed""#))
                }
                try await client.execute(uri: "/v1/subscriptions/fromconfig", method: .trace, headers: bearer) { response in
                    #expect(response.status == .methodNotAllowed)
                    #expect(response.headers[.allow] == "GET, HEAD, PATCH, DELETE")
                }
                try await client.execute(uri: "/v1/wechat/wx1111111111111111/cgi-bin/menu/get", method: .options, headers: bearer) { response in
                    #expect(response.headers[.allow] == "GET, HEAD, POST, PUT, PATCH, DELETE")
                }
                try await client.execute(uri: "/v1/authorizers/sync", method: .get, headers: bearer) { response in
                    #expect(response.headers[.allow] == "POST")  // the route, not /v1/authorizers/{appid}
                }
                try await client.execute(uri: "/v1/deliveries", method: try #require(HTTPRequest.Method("QUERY")), headers: bearer) { response in
                    #expect(response.status == .methodNotAllowed && response.headers[.allow] == "GET, HEAD")
                }
                let unknown = try await Self.call(client, .get, "/v1/subscription")
                #expect(unknown.status == 404 && Self.errorCode(unknown.body) == "not_found", "\(unknown)")
                #expect((unknown.body["error"] as? [String: Any])?["message"] as? String
                        == "the admin API has no route /v1/subscription; its routes are listed in /v1/openapi.yaml")
                try await client.execute(uri: "/v1/subscriptions/fromconfig", method: .head, headers: bearer) { response in
                    #expect(response.status == .ok)
                    #expect(response.body.readableBytes == 0)
                }
                #expect(try await Self.call(client, .delete, "/v1/events", token: nil).status == 401)
                #expect(try await Self.call(client, .get, "/v1/subscription", token: nil).status == 401)
                #expect(try await client.execute(uri: "/nowhere", method: .get) { $0.status } == .notFound)
            }
        }
    }

    @Test func subscriptionLifecycle() async throws {
        try await TestRelay.with(extraYAML: Self.yaml(subscriptions: "  - id: fromconfig\n    url: http://127.0.0.1:9/x")) { relay in
            try await relay.application().test(.router) { client async throws in
                let created = try await Self.call(client, .post, "/v1/subscriptions",
                                                  json: #"{"id": "crm", "url": "http://127.0.0.1:9/hook", "events": ["message.*"], "ordered": true}"#)
                #expect(created.status == 201)
                #expect((created.body["secret"] as? String)?.hasPrefix("whsec_") == true)
                #expect(created.body["source"] as? String == "api")
                #expect(created.body["status"] as? String == "enabled")
                #expect(created.body["ordered"] as? Bool == true)
                #expect(created.body["appids"] as? [String] == ["*"])
                #expect(created.body["created_at"] is String)

                let list = try await Self.call(client, .get, "/v1/subscriptions")
                let data = try #require(list.body["data"] as? [[String: Any]])
                #expect(Set(data.compactMap { $0["id"] as? String }) == ["fromconfig", "crm"])
                #expect(data.allSatisfy { $0["secret"] == nil })
                #expect(list.body.keys.contains("next_cursor"))
                #expect(data.first { $0["id"] as? String == "fromconfig" }?["source"] as? String == "config")

                #expect(try await Self.call(client, .post, "/v1/subscriptions", json: #"{"id": "crm", "url": "http://127.0.0.1:9/"}"#).status == 409)
                let patched = try await Self.call(client, .patch, "/v1/subscriptions/crm", json: #"{"status": "disabled"}"#)
                #expect(patched.body["status"] as? String == "disabled")
                #expect(try await Self.call(client, .patch, "/v1/subscriptions/fromconfig", json: #"{"status": "disabled"}"#).status == 409)
                #expect(try await Self.call(client, .delete, "/v1/subscriptions/fromconfig").status == 409)
                #expect(try await Self.call(client, .delete, "/v1/subscriptions/crm").status == 204)
                #expect(try await Self.call(client, .get, "/v1/subscriptions/crm").status == 404)

                let unknownField = try await Self.call(client, .post, "/v1/subscriptions", json: #"{"url": "http://127.0.0.1:9/", "evnts": []}"#)
                #expect(unknownField.status == 400)
                #expect(Self.errorCode(unknownField.body) == "invalid_request")
                #expect(((unknownField.body["error"] as? [String: Any])?["message"] as? String)?.contains("evnts") == true)
                #expect(try await Self.call(client, .post, "/v1/subscriptions", json: #"{"url": "http://127.0.0.1:9/", "ordered": 1}"#).status == 400)

                // AppIDs and globs that could never match are refused, naming the item; a PATCH too.
                let typo = try await Self.call(client, .post, "/v1/subscriptions", json: #"{"url": "http://127.0.0.1:9/", "appids": ["*", "wx12 "]}"#)
                #expect(typo.status == 400)
                #expect(((typo.body["error"] as? [String: Any])?["message"] as? String)?.hasPrefix(#"appids[1]: "wx12 " is not an AppID"#) == true)
                let glob = try await Self.call(client, .post, "/v1/subscriptions", json: #"{"url": "http://127.0.0.1:9/", "events": [""]}"#)
                #expect(((glob.body["error"] as? [String: Any])?["message"] as? String)?.hasPrefix(#"events[0]: "" is not an event type"#) == true)
                #expect(try await Self.call(client, .post, "/v1/subscriptions", json: #"{"id": "crm2", "url": "http://127.0.0.1:9/"}"#).status == 201)
                #expect(try await Self.call(client, .patch, "/v1/subscriptions/crm2", json: #"{"events": ["message. text"]}"#).status == 400)
                // Credentials in the URL were kept and never sent (no Basic auth): refused, in a PATCH too.
                let credentials = try await Self.call(client, .patch, "/v1/subscriptions/crm2", json: #"{"url": "https://crm:s3cret@127.0.0.1/"}"#)
                #expect(((credentials.body["error"] as? [String: Any])?["message"] as? String)?
                    .hasPrefix("url: must not carry a user name or password (user:password@)") == true)
                let port = try await Self.call(client, .post, "/v1/subscriptions", json: #"{"url": "http://127.0.0.1:9:99999/"}"#)
                #expect(((port.body["error"] as? [String: Any])?["message"] as? String) == "url: not a valid URL (such as https://crm.example.com/hooks/wechat)")
                #expect(try await Self.call(client, .get, "/v1/subscriptions/crm2").body["events"] as? [String] == ["*"])
            }
        }
    }

    @Test(arguments: ["http://127.0.0.1/", "http://10.0.0.1/", "http://[::1]/", "http://169.254.169.254/latest/meta-data",
                      "ftp://example.com/", "http://localhost:8080/", "not a url", "https://192.168.0.10/"])
    func privateOrNonHTTPURLsAreRefusedAtRegistration(url: String) async throws {
        try await Self.expectRefusedAtRegistration(url, allowPrivate: false)
    }

    /// Allowing private networks lifts the address check only: the URL's form is still checked.
    @Test(arguments: ["ftp://example.com/", "not a url", "http:///nohost", "http://crm:s3cret@127.0.0.1:9/hook", "http://crm@127.0.0.1:9/"])
    func malformedURLsAreRefusedEvenWithPrivateNetworksAllowed(url: String) async throws {
        try await Self.expectRefusedAtRegistration(url, allowPrivate: true)
    }

    static func expectRefusedAtRegistration(_ url: String, allowPrivate: Bool) async throws {
        try await TestRelay.with(extraYAML: yaml(allowPrivate: allowPrivate)) { relay in
            try await relay.application().test(.router) { client async throws in
                let answer = try await call(client, .post, "/v1/subscriptions", json: #"{"url": "\#(url)"}"#)
                #expect(answer.status == 400)
                #expect(((answer.body["error"] as? [String: Any])?["message"] as? String)?.hasPrefix("url:") == true)
            }
            #expect(try await relay.store.subscriptions().isEmpty)
        }
    }

    @Test func rotationSignsWithBothSecretsAndPingReachesOnlyThatSubscription() async throws {
        try await TestReceiver.run { receiver, port in
            try await TestRelay.with(extraYAML: Self.yaml()) { relay in
                try await relay.application().test(.router) { client async throws in
                    let created = try await Self.call(client, .post, "/v1/subscriptions", json: #"{"id": "r", "url": "http://127.0.0.1:\#(port)/"}"#)
                    let oldSecret = try #require(created.body["secret"] as? String)
                    let rotated = try await Self.call(client, .post, "/v1/subscriptions/r/rotate-secret")
                    let newSecret = try #require(rotated.body["secret"] as? String)
                    #expect(newSecret != oldSecret)

                    let ping = try await Self.call(client, .post, "/v1/subscriptions/r/test")
                    #expect(ping.status == 202)
                    let request = try await receiver.next()
                    #expect(request.body.contains(#""type":"relay.ping""#))
                    let id = try #require(request.headers["webhook-id"])
                    let timestamp = try #require(request.headers["webhook-timestamp"])
                    let signatures = (request.headers["webhook-signature"] ?? "").split(separator: " ").map(String.init)
                    #expect(signatures.count == 2)
                    for secret in [newSecret, oldSecret] {
                        #expect(signatures.contains(DeliveryTests.expectedSignature(secret: secret, id: id, timestamp: timestamp, body: request.body)))
                    }
                }
            }
        }
    }

    @Test func eventsDeliveriesRetryAndReplay() async throws {
        let failing = FirstTime()
        try await TestReceiver.run(respond: { _, _ in failing.first() ? .init(status: 500) : .init(status: 200) }) { receiver, port in
            try await TestRelay.with(extraYAML: Self.yaml(subscriptions: "  - id: crm\n    url: http://127.0.0.1:\(port)/", schedule: "[]")) { relay in
                let reports = Reports()
                try await relay.application(onDeliveryAttempt: reports.hook).test(.router) { client async throws in
                    _ = try await client.send(relay.textPush(content: "admin"))
                    #expect(try await reports.next(1).first?.verdict == .dead)  // an empty schedule: one attempt only

                    let events = try await Self.call(client, .get, "/v1/events?type=message.text&limit=10")
                    let event = try #require((events.body["data"] as? [[String: Any]])?.first)
                    let eventId = try #require(event["id"] as? String)
                    #expect((event["data"] as? [String: Any])?["Content"] as? String == "admin")
                    let one = try await Self.call(client, .get, "/v1/events/\(eventId)")
                    let delivery = try #require((one.body["deliveries"] as? [[String: Any]])?.first)
                    #expect(delivery["status"] as? String == "dead")
                    #expect(delivery["subscription_id"] as? String == "crm")
                    let attempt = try #require((delivery["attempts"] as? [[String: Any]])?.first)
                    #expect(attempt["status_code"] as? Int == 500)
                    #expect(attempt["duration_ms"] is Int)
                    #expect(attempt.keys.contains("error") && attempt.keys.contains("at"))

                    let dead = try await Self.call(client, .get, "/v1/deliveries?subscription=crm&status=dead")
                    let deliveryId = try #require((dead.body["data"] as? [[String: Any]])?.first?["id"] as? String)
                    #expect(try await Self.call(client, .post, "/v1/deliveries/\(deliveryId)/retry").status == 202)
                    #expect(try await reports.next(1).first?.verdict == .succeeded)

                    let replay = try await Self.call(client, .post, "/v1/subscriptions/crm/replay", json: #"{"since": "2020-01-01T00:00:00Z"}"#)
                    #expect(replay.body["replayed"] as? Int == 1)
                    #expect(try await reports.next(1).first?.verdict == .succeeded)
                    #expect(Set(receiver.requests.compactMap { $0.headers["webhook-id"] }) == [eventId])
                    #expect(receiver.requests.count == 3)
                    #expect(try await Self.call(client, .get, "/v1/events/evt_nope").status == 404)
                    #expect(try await Self.call(client, .get, "/v1/deliveries?status=bogus").status == 400)
                }
            }
        }
    }

    /// Events page newest first through `next_cursor`; a cursor that names no stored event is a
    /// 400 — it gave an empty page, which a client paging through took for the end of the list.
    @Test func eventsPageThroughTheCursorAndAnUnknownCursorIsRefused() async throws {
        try await TestRelay.with(extraYAML: Self.yaml(subscriptions: "  - id: crm\n    url: http://127.0.0.1:9/")) { relay in
            try await relay.application().test(.router) { client async throws in
                for i in 0..<3 { #expect(try await client.send(relay.textPush(msgId: "\(700 + i)")).body == "success") }
                let first = try await Self.call(client, .get, "/v1/events?limit=2")
                let page = try #require(first.body["data"] as? [[String: Any]])
                let cursor = try #require(first.body["next_cursor"] as? String)
                #expect(page.compactMap { ($0["data"] as? [String: Any])?["MsgId"] as? String } == ["702", "701"])
                let second = try await Self.call(client, .get, "/v1/events?limit=2&after=\(cursor)")
                #expect((second.body["data"] as? [[String: Any]])?.compactMap { ($0["data"] as? [String: Any])?["MsgId"] as? String } == ["700"])
                #expect(second.body["next_cursor"] is NSNull)
                // An empty cursor (a null next_cursor passed back as text) is the first page, for deliveries too.
                #expect((try await Self.call(client, .get, "/v1/events?limit=2&after=").body["data"] as? [[String: Any]])?.count == 2)
                #expect((try await Self.call(client, .get, "/v1/deliveries?after=").body["data"] as? [[String: Any]])?.count == 3)
                let unknown = try await Self.call(client, .get, "/v1/events?after=evt_01ZZZZZZZZZZZZZZZZZZZZZZZZ")
                #expect(unknown.status == 400 && Self.errorCode(unknown.body) == "invalid_request")
                #expect(((unknown.body["error"] as? [String: Any])?["message"] as? String)?
                    .hasPrefix("after: no stored event evt_01ZZZZZZZZZZZZZZZZZZZZZZZZ") == true)
            }
        }
    }

    /// A replay's times are whole ISO 8601 times; Foundation alone took `…Zjunk` as the time before
    /// it, and rolled fields out of range over (12:99 as 13:39, found by schemathesis; 30 February
    /// as 2 March).
    @Test(arguments: [("2026-11-22T00:00:00Zjunk", 400), ("2026-11-22T00:00:00Z ", 400), ("2026-11-22", 400), ("2026-11-22T00:00:00", 400),
                      ("yesterday", 400), ("2024-01-01T12:99:00Z", 400), ("2026-02-30T00:00:00Z", 400), ("2026-13-01T00:00:00Z", 400),
                      ("2026-11-22T24:00:00Z", 400), ("2026-11-22T00:00:60Z", 400), ("2026-11-22T08:00:00+08:60", 400),
                      ("2024-02-29T00:00:00Z", 202), ("2026-11-22T00:00:00Z", 202), ("2026-11-22T00:00:00.250Z", 202),
                      ("2026-11-22T08:00:00+08:00", 202)])
    func replayTimesMustBeWholeISO8601Times(since: String, status: Int) async throws {
        try await TestRelay.with(extraYAML: Self.yaml(subscriptions: "  - id: crm\n    url: http://127.0.0.1:9/")) { relay in
            try await relay.application().test(.router) { client async throws in
                let answer = try await Self.call(client, .post, "/v1/subscriptions/crm/replay", json: #"{"since": "\#(since)"}"#)
                #expect(answer.status == status, "\(since): \(answer.body)")
                if status == 400 {
                    #expect(((answer.body["error"] as? [String: Any])?["message"] as? String)?.hasPrefix("since must be an ISO 8601 time") == true)
                }
            }
        }
    }

    @Test func disablingCancelsPendingDeliveriesAtOnce() async throws {
        try await TestReceiver.run(respond: { _, _ in .init(status: 500) }) { _, port in
            try await TestRelay.with(extraYAML: Self.yaml(schedule: "[1h]")) { relay in
                let reports = Reports()
                try await relay.application(onDeliveryAttempt: reports.hook).test(.router) { client async throws in
                    _ = try await Self.call(client, .post, "/v1/subscriptions", json: #"{"id": "s", "url": "http://127.0.0.1:\#(port)/"}"#)
                    _ = try await client.send(relay.textPush())
                    _ = try await reports.next(1)
                    #expect(try await relay.store.deliveries(DeliveryQuery()).first?.status == .failed)
                    _ = try await Self.call(client, .patch, "/v1/subscriptions/s", json: #"{"status": "disabled"}"#)
                    #expect(try await relay.store.deliveries(DeliveryQuery()).first?.status == .cancelled)
                    let metrics = try await client.get("/metrics").body
                    #expect(metrics.contains("relay_delivery_queue_depth 0"))
                }
            }
        }
    }

    @Test func oneReplyEndpointPerAppid() async throws {
        try await TestRelay.with(extraYAML: Self.yaml()) { relay in
            try await relay.application().test(.router) { client async throws in
                let first = #"{"id": "bot1", "url": "http://127.0.0.1:9/", "appids": ["wx1"], "reply": true}"#
                #expect(try await Self.call(client, .post, "/v1/subscriptions", json: first).status == 201)
                let second = #"{"id": "bot2", "url": "http://127.0.0.1:9/", "appids": ["wx1", "wx2"], "reply": true}"#
                #expect(try await Self.call(client, .post, "/v1/subscriptions", json: second).status == 409)
            }
        }
    }
}
