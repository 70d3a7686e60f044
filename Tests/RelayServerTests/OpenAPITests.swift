import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import RelayCore
@testable import RelayServer
import RelayTestSupport
import Testing
import Yams

/// The OpenAPI document matches the admin API: the same operations, and answers of the
/// documented shapes — every required field, of the documented type, and no undocumented one.
@Suite struct OpenAPITests {
    static let methods = ["get", "post", "put", "patch", "delete"]

    /// The document as Yams reads it, turned into `JSON` (so it can cross into test closures),
    /// with `$ref`s resolved on demand.
    struct Document: Sendable {
        let root: JSON

        init() throws {
            root = JSON(yaml: try Yams.load(yaml: OpenAPIDocument.yaml) as Any)
        }

        func resolve(_ node: JSON?) -> JSON {
            guard let node else { return .object([:]) }
            guard case .string(let ref)? = node["$ref"], ref.hasPrefix("#/") else { return node }
            var current: JSON? = root
            for key in ref.dropFirst(2).split(separator: "/") { current = current?[String(key)] }
            return resolve(current)
        }

        var paths: [String: JSON] {
            guard case .object(let paths)? = root["paths"] else { return [:] }
            return paths.mapValues { resolve($0) }
        }

        /// "GET /v1/subscriptions/{id}", … for every documented operation.
        var operations: Set<String> {
            Set(paths.flatMap { path, item in OpenAPITests.methods.filter { item[$0] != nil }.map { "\($0.uppercased()) \(path)" } })
        }

        /// The JSON schema of the answer `status` to `method` `path`, if the document gives one.
        func answerSchema(_ method: String, _ path: String, _ status: Int) -> JSON? {
            guard let response = paths[path]?[method.lowercased()]?["responses"]?[String(status)],
                  let schema = resolve(response)["content"]?["application/json"]?["schema"] else { return nil }
            return resolve(schema)
        }

        /// What is wrong with `value` against `schema` (empty when it conforms).
        func problems(_ value: JSON, _ schema: JSON, at place: String) -> [String] {
            let schema = resolve(schema)
            if case .array(let parts)? = schema["allOf"] {
                let own = parts.flatMap { problems(value, $0, at: place) }.filter { !$0.contains("undocumented field") }
                return own + undocumented(value, properties(of: schema), at: place)
            }
            if let type = schema["type"] {
                let types = type.strings
                guard types.contains(where: value.isOf) else { return ["\(place): expected \(types.joined(separator: " or ")), got \(value)"] }
            }
            if let allowed = schema["enum"]?.strings, case .string(let text) = value, !allowed.contains(text) {
                return ["\(place): \(text) is not one of \(allowed)"]
            }
            switch value {
            case .object(let members):
                guard case .object(let declared) = schema["properties"] ?? .object([:]) else { return [] }
                var found = (schema["required"]?.strings ?? []).filter { members[$0] == nil }.map { "\(place): missing \($0)" }
                for (key, member) in members.sorted(by: { $0.key < $1.key }) {
                    if let sub = declared[key] { found += problems(member, sub, at: place + "." + key) }
                }
                return found + undocumented(value, declared.isEmpty ? nil : Set(declared.keys), at: place)
            case .array(let items):
                guard let itemSchema = schema["items"] else { return [] }
                return items.enumerated().flatMap { problems($1, itemSchema, at: "\(place)[\($0)]") }
            default:
                return []
            }
        }

        /// Every property an object schema declares, across `allOf`; nil when it declares none (free-form).
        func properties(of schema: JSON) -> Set<String>? {
            let schema = resolve(schema)
            var names: Set<String> = []
            if case .object(let declared)? = schema["properties"] { names.formUnion(declared.keys) }
            if case .array(let parts)? = schema["allOf"] { for part in parts { names.formUnion(properties(of: part) ?? []) } }
            return names.isEmpty ? nil : names
        }

        func undocumented(_ value: JSON, _ declared: Set<String>?, at place: String) -> [String] {
            guard case .object(let members) = value, let declared else { return [] }
            return members.keys.filter { !declared.contains($0) }.sorted().map { "\(place): undocumented field \($0)" }
        }
    }

    /// JSON as decoded strictly: a number is never a boolean, nor a boolean a number.
    indirect enum JSON: Decodable, Sendable, CustomStringConvertible {
        case null, bool(Bool), integer(Int), number(Double), string(String), array([JSON]), object([String: JSON])

        /// What Yams loads: dictionaries, arrays, strings, numbers, booleans, nulls.
        init(yaml: Any) {
            switch yaml {
            case let value as [String: Any]: self = .object(value.mapValues(JSON.init(yaml:)))
            case let value as [Any]: self = .array(value.map(JSON.init(yaml:)))
            case let value as String: self = .string(value)
            case let value as Bool: self = .bool(value)
            case let value as Int: self = .integer(value)
            case let value as Double: self = .number(value)
            default: self = .null
            }
        }

        var items: [JSON] {
            if case .array(let items) = self { items } else { [] }
        }

        var first: JSON? { items.first }

        subscript(key: String) -> JSON? {
            guard case .object(let members) = self else { return nil }
            return members[key]
        }

        /// A string, or the strings of an array (a schema's `type`, `required`, `enum`).
        var strings: [String] {
            switch self {
            case .string(let value): [value]
            case .array(let items): items.compactMap { if case .string(let value) = $0 { value } else { nil } }
            default: []
            }
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if container.decodeNil() { self = .null }
            else if let value = try? container.decode(Bool.self) { self = .bool(value) }
            else if let value = try? container.decode(Int.self) { self = .integer(value) }
            else if let value = try? container.decode(Double.self) { self = .number(value) }
            else if let value = try? container.decode(String.self) { self = .string(value) }
            else if let value = try? container.decode([JSON].self) { self = .array(value) }
            else { self = .object(try container.decode([String: JSON].self)) }
        }

        func isOf(_ type: String) -> Bool {
            switch (self, type) {
            case (.null, "null"), (.bool, "boolean"), (.integer, "integer"), (.integer, "number"), (.number, "number"),
                 (.string, "string"), (.array, "array"), (.object, "object"): true
            default: false
            }
        }

        var description: String {
            switch self {
            case .null: "null"
            case .bool(let value): "\(value)"
            case .integer(let value): "\(value)"
            case .number(let value): "\(value)"
            case .string(let value): "\"\(value)\""
            case .array: "an array"
            case .object: "an object"
            }
        }
    }

    @Test func theDocumentIsOpenAPI31WithTheBearerScheme() throws {
        let document = try Document()
        #expect(document.root["openapi"]?.strings == ["3.1.0"])
        #expect(document.root["components"]?["securitySchemes"]?["admin"]?["scheme"]?.strings == ["bearer"])
    }

    /// Compared with the router itself: a route added without documenting it, or a documented
    /// operation that does not exist, fails here.
    @Test func everyAdminRouteIsDocumentedAndEveryDocumentedOperationExists() async throws {
        try await TestRelay.with(extraYAML: AdminAPITests.yaml()) { relay in
            let parts = try await RelayApplication.parts(config: relay.config, dependencies: RelayDependencies(
                store: relay.store, clock: relay.clock, metrics: relay.metrics, logger: relay.logger))
            try await parts.httpClient.shutdown()
            let routes = Set(parts.router.routes.map { "\($0.method.rawValue) \($0.path)" }
                .filter { $0.contains(" /v1/") }
                .map { $0.replacingOccurrences(of: "/**", with: "/{path}") })
            let documented = try Document().operations
            #expect(routes.subtracting(documented).isEmpty, "routes without documentation: \(routes.subtracting(documented).sorted())")
            #expect(documented.subtracting(routes).isEmpty, "documented but not routed: \(documented.subtracting(routes).sorted())")
            #expect(routes.count > 20)
        }
    }

    @Test func answersHaveTheDocumentedShapes() async throws {
        let document = try Document()
        try await TestReceiver.run(respond: { _, _ in .init(status: 500) }) { _, port in
            let yaml = AdminAPITests.yaml(subscriptions: "  - id: crm\n    url: http://127.0.0.1:\(port)/", schedule: "[]")
            try await TestRelay.with(extraYAML: yaml) { relay in
                let reports = Reports()
                try await relay.application(onDeliveryAttempt: reports.hook).test(.router) { client async throws in
                    _ = try await client.send(relay.textPush(content: "schema"))
                    _ = try await reports.next(1)
                    @discardableResult
                    func check(_ method: HTTPRequest.Method, _ template: String, _ uri: String, _ status: Int,
                               json: String? = nil) async throws -> JSON {
                        var headers: HTTPFields = [.contentType: "application/json", .authorization: "Bearer \(AdminAPITests.token)"]
                        headers[.accept] = "application/json"
                        let (answered, body) = try await client.execute(uri: uri, method: method, headers: headers,
                                                                        body: json.map { ByteBuffer(string: $0) }) {
                            (Int($0.status.code), Data($0.body.readableBytesView))
                        }
                        #expect(answered == status, "\(method) \(uri): \(String(decoding: body, as: UTF8.self))")
                        let value = try JSONDecoder().decode(JSON.self, from: body)
                        guard let schema = document.answerSchema(method.rawValue, template, status) else {
                            Issue.record("\(method) \(template) answering \(status) is not documented")
                            return value
                        }
                        let found = document.problems(value, schema, at: "\(method) \(uri)")
                        #expect(found.isEmpty, "\(found.joined(separator: "\n"))")
                        return value
                    }
                    try await check(.get, "/v1/subscriptions", "/v1/subscriptions", 200)
                    try await check(.post, "/v1/subscriptions", "/v1/subscriptions", 201,
                                    json: #"{"id": "api", "url": "http://127.0.0.1:\#(port)/api", "events": ["message.*"]}"#)
                    try await check(.post, "/v1/subscriptions", "/v1/subscriptions", 400, json: #"{"url": "ftp://example.com"}"#)
                    try await check(.get, "/v1/subscriptions/{id}", "/v1/subscriptions/crm", 200)
                    try await check(.get, "/v1/subscriptions/{id}", "/v1/subscriptions/none", 404)
                    try await check(.patch, "/v1/subscriptions/{id}", "/v1/subscriptions/api", 200, json: #"{"ordered": true}"#)
                    try await check(.patch, "/v1/subscriptions/{id}", "/v1/subscriptions/crm", 409, json: #"{"ordered": true}"#)
                    try await check(.post, "/v1/subscriptions/{id}/rotate-secret", "/v1/subscriptions/api/rotate-secret", 200)
                    try await check(.post, "/v1/subscriptions/{id}/test", "/v1/subscriptions/api/test", 202)
                    try await check(.post, "/v1/subscriptions/{id}/replay", "/v1/subscriptions/api/replay", 202,
                                    json: #"{"since": "2020-01-01T00:00:00Z"}"#)
                    let events = try await check(.get, "/v1/events", "/v1/events?type=message.text", 200)
                    // The push's delivery to crm was attempted (and died); the replay added one to api.
                    guard case .string(let eventId)? = events["data"]?.first?["id"],
                          let attempted = events["data"]?.first?["deliveries"]?.items.first(where: { !($0["attempts"]?.items ?? []).isEmpty }),
                          case .string(let deliveryId)? = attempted["id"]
                    else { Issue.record("no event with an attempted delivery"); return }
                    try await check(.get, "/v1/events/{id}", "/v1/events/\(eventId)", 200)
                    try await check(.get, "/v1/events/{id}", "/v1/events/evt_none", 404)
                    try await check(.get, "/v1/deliveries", "/v1/deliveries?subscription=crm&status=dead", 200)
                    try await check(.get, "/v1/deliveries", "/v1/deliveries?status=lost", 400)
                    try await check(.post, "/v1/deliveries/{id}/retry", "/v1/deliveries/\(deliveryId)/retry", 202)
                    try await check(.get, "/v1/components", "/v1/components", 200)
                    try await check(.get, "/v1/components/{appid}/access-token", "/v1/components/wxnone/access-token", 404)
                    try await check(.get, "/v1/authorizers/{appid}/access-token", "/v1/authorizers/wxnone/access-token", 404)
                    try await check(.get, "/v1/authorizers", "/v1/authorizers", 200)
                    try await check(.get, "/v1/authorizers/{appid}", "/v1/authorizers/wxnone", 404)
                    let deleted = try await client.execute(uri: "/v1/subscriptions/api", method: .delete,
                                                           headers: [.authorization: "Bearer \(AdminAPITests.token)"]) { $0 }
                    #expect(deleted.status == .noContent && deleted.body.readableBytes == 0)
                    #expect(document.operations.contains("DELETE /v1/subscriptions/{id}"))
                }
            }
        }
    }

    @Test func theRelayServesAndPrintsTheDocument() async throws {
        try await TestRelay.with(extraYAML: AdminAPITests.yaml()) { relay in
            try await relay.application().test(.router) { client async throws in
                let served = try await client.execute(uri: "/v1/openapi.yaml", method: .get,
                                                      headers: [.authorization: "Bearer \(AdminAPITests.token)"]) { $0 }
                #expect(served.status == .ok)
                #expect(served.headers[.contentType]?.hasPrefix("application/yaml") == true)
                #expect(String(buffer: served.body) == OpenAPIDocument.yaml)
                let anonymous = try await client.execute(uri: "/v1/openapi.yaml", method: .get) { $0.status }
                #expect(anonymous == .unauthorized)
            }
        }
    }
}
