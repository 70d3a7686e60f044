import Foundation
import Hummingbird
import HummingbirdTesting
import RelayCore
import RelayTestSupport
import Testing

/// A NUL (or another control character) in an admin request is the caller's mistake: a 400 that
/// names where it was, on both stores. PostgreSQL's text refuses NUL, so such a value used to reach
/// the store and come back as a 500 there (and was stored as it came on SQLite).
@Suite struct ControlCharacterInputTests {
    static let yaml = AdminAPITests.yaml(subscriptions: "  - id: crm\n    url: http://127.0.0.1:9/hook")

    static let bodies: [(HTTPRequest.Method, String, String, String)] = [
        (.post, "/v1/subscriptions", #"{"url": "http://127.0.0.1:9/hook", "appids": ["wx\u0000"]}"#, "appids"),
        (.post, "/v1/subscriptions", #"{"id": "a", "url": "http://127.0.0.1:9/hook", "events": ["message.\u0001"]}"#, "events"),
        (.post, "/v1/subscriptions", #"{"url": "http://127.0.0.1:9/ho\u0000ok"}"#, "url"),
        (.patch, "/v1/subscriptions/api1", #"{"appids": ["wx\u0000"]}"#, "appids"),
        (.post, "/v1/subscriptions/api1/replay", #"{"since": "2026-11-22T00:00:00Z\u0000"}"#, "since"),
    ]

    static let urls: [(String, String)] = [
        ("/v1/events?appid=wx%00", "appid"),
        ("/v1/events?type=message.text%00", "type"),
        ("/v1/events?after=evt_%00", "after"),
        ("/v1/deliveries?subscription=crm%00", "subscription"),
        ("/v1/deliveries?after=dlv_%00", "after"),
        ("/v1/events/evt_%00", "path"),
        ("/v1/authorizers/wx%00", "path"),
        ("/v1/subscriptions/api1%00", "path"),
        ("/v1/events?limit=10&appid=%C2%85", "appid"),  // NEL, a C1 control
        ("/v1/events?type=%7F", "type"),
        ("/onboarding/callback?auth_code=code%00&expires_in=600", "auth_code"),
        ("/dashboard?id=%1B", "id"),
    ]

    @Test(arguments: StoreBackend.available)
    func controlCharactersAreRefusedWithA400NamingTheField(backend: StoreBackend) async throws {
        try await backend.withStorageURL { url in
            try await TestRelay.with(extraYAML: Self.yaml, storageURL: url) { relay in
                try await relay.application().test(.router) { client async throws in
                    let created = try await AdminAPITests.call(client, .post, "/v1/subscriptions",
                                                               json: #"{"id": "api1", "url": "http://127.0.0.1:9/api"}"#)
                    #expect(created.status == 201)
                    for (method, uri, json, field) in Self.bodies {
                        let answer = try await AdminAPITests.call(client, method, uri, json: json)
                        #expect(answer.status == 400, "\(method) \(uri) \(json): \(answer.body)")
                        let message = (answer.body["error"] as? [String: Any])?["message"] as? String ?? ""
                        #expect(message.contains(field) && message.contains("control character"), "\(uri): \(message)")
                    }
                    for (uri, field) in Self.urls {
                        let answer = try await AdminAPITests.call(client, .get, uri)
                        #expect(answer.status == 400, "GET \(uri): \(answer.body)")
                        let message = (answer.body["error"] as? [String: Any])?["message"] as? String ?? ""
                        #expect(message.contains(field) && message.contains("control character"), "\(uri): \(message)")
                    }
                    // Escapes of other characters pass: a no-break space (also led by %C2), a Chinese type.
                    #expect(try await AdminAPITests.call(client, .get, "/v1/events?appid=%C2%A0&type=%E4%BD%A0").status == 200)
                }
                let subscriptions = try await relay.store.subscriptions()
                #expect(Set(subscriptions.map(\.id)) == ["crm", "api1"])
                #expect(subscriptions.first { $0.id == "api1" }?.appids == ["*"])
            }
        }
    }
}
