import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// WeChat's component APIs as the tests need them, on a port the OS picks, with WeChat's error
/// behaviour: 61006 for an unknown ticket, 40001 for a stale token, 61009 for a used code, 61023
/// for a refresh token that was rotated away. Refresh tokens rotate on every refresh. Every call is
/// recorded so tests can assert what WeChat saw.
public final class FakeWeChat: Sendable {
    public struct Call: Sendable {
        public let path: String
        public let query: String
        public let body: [String: String]
    }

    struct State {
        var validTickets: Set<String> = []
        var componentTokens: Set<String> = []
        var authCodes: [String: String] = [:]          // code -> authorizer appid
        var usedCodes: Set<String> = []
        var refreshTokens: [String: String] = [:]      // authorizer appid -> current refresh token
        var accessTokens: [String: String] = [:]       // access token -> authorizer appid
        var counter = 0
        var calls: [Call] = []
        var refusesTicketRequests = false
        var nickNames: [String: String] = [:]           // authorizer appid -> nick_name, as JSON
        var trickling: Set<String> = []                 // APIs whose answer never ends
        var delays: [String: Duration] = [:]            // APIs that answer late
        var withdrawn: Set<String> = []                 // authorizers that no longer authorize
        var failures: [String: (Int, String)] = [:]     // APIs that answer an error
        var gates: [String: Gate] = [:]                 // APIs whose calls wait for company
    }

    /// Calls held until `needed` of them wait together (then all go on), or until `timeout`.
    struct Gate {
        let needed: Int
        var waiting: [CheckedContinuation<Void, Never>] = []
        var opened = false
    }

    private let state = Mutex(State())
    private let stream: AsyncStream<Call>
    private let continuation: AsyncStream<Call>.Continuation

    init() {
        (stream, continuation) = AsyncStream.makeStream(of: Call.self)
    }

    /// Waits for the next call to a path ending in `api`, failing after `timeout`.
    public func waitForCall(to api: String, timeout: Duration = .seconds(10)) async throws -> Call {
        let stream = self.stream
        return try await withThrowingTaskGroup(of: Call?.self) { group in
            group.addTask {
                for await call in stream where call.path.hasSuffix("/" + api) { return call }
                return nil
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let call = first else {
                throw TimeoutError(description: "WeChat saw no call to \(api) within \(timeout)")
            }
            return call
        }
    }

    public var calls: [Call] { state.withLock { $0.calls } }

    public func calls(to api: String) -> [Call] { calls.filter { $0.path.hasSuffix("/" + api) } }

    public func addTicket(_ ticket: String) { state.withLock { _ = $0.validTickets.insert(ticket) } }

    /// From now on `api_start_push_ticket` answers 40125, as WeChat does for a wrong AppSecret.
    public func refuseTicketRequests() { state.withLock { $0.refusesTicketRequests = true } }

    /// A merchant authorized: WeChat has a code for `authorizer`.
    public func addAuthCode(_ code: String, authorizer: String) { state.withLock { $0.authCodes[code] = authorizer } }

    /// The nick_name WeChat's profile of `authorizer` gives (any text: it is JSON-encoded).
    public func setNickName(_ name: String, for authorizer: String) {
        let json = String(decoding: try! JSONEncoder().encode(name), as: UTF8.self)
        state.withLock { $0.nickNames[authorizer] = json }
    }

    /// From now on `api` answers its head and then a byte every 20 ms, never ending (as a stalled
    /// middlebox might): only a deadline on the whole answer ends the call.
    public func trickle(_ api: String) { state.withLock { _ = $0.trickling.insert(api) } }

    /// From now on `api` answers WeChat's error `errcode` (61004 when the caller's IP is not
    /// whitelisted, 45009 when the quota is used up, …).
    public func fail(_ api: String, errcode: Int, _ errmsg: String) { state.withLock { $0.failures[api] = (errcode, errmsg) } }

    /// `api` answers normally again.
    public func recover(_ api: String) { state.withLock { _ = $0.failures.removeValue(forKey: api) } }

    /// From now on calls to `api` wait until `count` of them are under way at once, then all
    /// answer; a call that waits `timeout` for the rest answers alone. The way to see that the
    /// relay makes calls concurrently without timing them.
    public func holdUntilConcurrent(_ api: String, count: Int) { state.withLock { $0.gates[api] = Gate(needed: count) } }

    /// Holds the call if its API has a gate; whether it went on in company.
    func passGate(for path: String, timeout: Duration = .seconds(5)) async -> Bool {
        guard let api = state.withLock({ $0.gates.first { path.hasSuffix("/" + $0.key) }?.key }) else { return true }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let released: [CheckedContinuation<Void, Never>] = self.state.withLock {
                        guard var gate = $0.gates[api], !gate.opened else { return [continuation] }
                        gate.waiting.append(continuation)
                        if gate.waiting.count >= gate.needed { gate.opened = true }
                        let released = gate.opened ? gate.waiting : []
                        if gate.opened { gate.waiting = [] }
                        $0.gates[api] = gate
                        return released
                    }
                    released.forEach { $0.resume() }
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                guard !Task.isCancelled else { return }
                // Company never came: let every waiter go, the gate still closed.
                let stranded: [CheckedContinuation<Void, Never>] = self.state.withLock {
                    let stranded = $0.gates[api]?.waiting ?? []
                    $0.gates[api]?.waiting = []
                    return stranded
                }
                stranded.forEach { $0.resume() }
            }
            await group.next()
            group.cancelAll()
        }
        return state.withLock { $0.gates[api]?.opened ?? true }
    }

    /// From now on `api` answers after `delay` (as WeChat does when it is slow).
    public func delay(_ api: String, by delay: Duration) { state.withLock { $0.delays[api] = delay } }

    func delay(for path: String) -> Duration? { state.withLock { $0.delays.first { path.hasSuffix("/" + $0.key) }?.value } }

    func trickles(_ path: String) -> Bool { state.withLock { $0.trickling.contains { path.hasSuffix("/" + $0) } } }

    /// Makes every issued token stale (as after a token reset), so the next use gets 40001.
    public func invalidateTokens() {
        state.withLock {
            $0.componentTokens.removeAll()
            $0.accessTokens.removeAll()
        }
    }

    /// The merchant authorized again (or WeChat rotated the token) without the relay hearing of
    /// it: WeChat now accepts only a new refresh token for `authorizer`.
    public func supersedeRefreshToken(_ authorizer: String) {
        state.withLock { $0.refreshTokens[authorizer] = "refreshtoken@@@\(authorizer)-superseded" }
    }

    /// The merchant withdrew the authorization without the relay hearing of it: the refresh token
    /// answers 61023 and the account details 61003.
    public func withdrawAuthorization(_ authorizer: String) {
        state.withLock {
            $0.refreshTokens[authorizer] = nil
            _ = $0.withdrawn.insert(authorizer)
        }
    }

    /// The refresh token WeChat currently accepts for `authorizer`.
    public func currentRefreshToken(_ authorizer: String) -> String? { state.withLock { $0.refreshTokens[authorizer] } }

    func handle(path: String, query: String, body: [String: String]) -> String {
        continuation.yield(Call(path: path, query: query, body: body))
        return state.withLock { s in
            s.calls.append(Call(path: path, query: query, body: body))
            s.counter += 1
            let n = s.counter
            let token = Self.parameter(query, "component_access_token")
            func needsComponentToken() -> String? {
                guard let token, s.componentTokens.contains(token) else { return Self.error(40001, "invalid credential, access_token is invalid or not latest") }
                return nil
            }
            if let (errcode, errmsg) = s.failures.first(where: { path.hasSuffix("/" + $0.key) })?.value {
                return Self.error(errcode, errmsg)
            }
            switch path {
            case "/cgi-bin/component/api_component_token":
                guard s.validTickets.contains(body["component_verify_ticket"] ?? "") else { return Self.error(61006, "component ticket is invalid") }
                let issued = "ctok-\(n)"
                s.componentTokens.insert(issued)
                return #"{"component_access_token":"\#(issued)","expires_in":7200}"#
            case "/cgi-bin/component/api_start_push_ticket":
                if s.refusesTicketRequests { return Self.error(40125, "invalid appsecret") }
                return #"{"errcode":0,"errmsg":"ok"}"#
            case "/cgi-bin/component/api_create_preauthcode":
                if let error = needsComponentToken() { return error }
                return #"{"pre_auth_code":"preauthcode@@@fake-\#(n)","expires_in":600}"#
            case "/cgi-bin/component/api_query_auth":
                if let error = needsComponentToken() { return error }
                let code = body["authorization_code"] ?? ""
                guard let appid = s.authCodes[code], !s.usedCodes.contains(code) else { return Self.error(61009, "code is invalid") }
                s.usedCodes.insert(code)
                let refresh = "refreshtoken@@@\(appid)-\(n)", access = "atok-\(appid)-\(n)"
                s.refreshTokens[appid] = refresh
                s.accessTokens[access] = appid
                return #"{"authorization_info":{"authorizer_appid":"\#(appid)","authorizer_access_token":"\#(access)","expires_in":7200,"authorizer_refresh_token":"\#(refresh)","func_info":[{"funcscope_category":{"id":1}},{"funcscope_category":{"id":15}}]}}"#
            case "/cgi-bin/component/api_authorizer_token":
                if let error = needsComponentToken() { return error }
                let appid = body["authorizer_appid"] ?? ""
                guard let current = s.refreshTokens[appid], current == body["authorizer_refresh_token"] else {
                    return Self.error(61023, "refresh_token is invalid")
                }
                let refresh = "refreshtoken@@@\(appid)-\(n)", access = "atok-\(appid)-\(n)"
                s.refreshTokens[appid] = refresh
                s.accessTokens[access] = appid
                return #"{"authorizer_access_token":"\#(access)","expires_in":7200,"authorizer_refresh_token":"\#(refresh)"}"#
            case "/cgi-bin/component/api_get_authorizer_info":
                if let error = needsComponentToken() { return error }
                let appid = body["authorizer_appid"] ?? ""
                if s.withdrawn.contains(appid) { return Self.error(61003, "component is not authorized by this account") }
                let nickName = s.nickNames[appid] ?? #""Shop \#(appid.suffix(4))""#
                let refresh = s.refreshTokens[appid].map { #","authorizer_refresh_token":"\#($0)""# } ?? ""
                return #"{"authorizer_info":{"nick_name":\#(nickName),"user_name":"gh_\#(appid.suffix(12))","service_type_info":{"id":2},"verify_type_info":{"id":0}},"authorization_info":{"authorizer_appid":"\#(appid)"\#(refresh)}}"#
            case "/cgi-bin/component/api_get_authorizer_list":
                if let error = needsComponentToken() { return error }
                let items = s.refreshTokens.sorted { $0.key < $1.key }
                let offset = Int(body["offset"] ?? "0") ?? 0, count = Int(body["count"] ?? "100") ?? 100
                let page = items.dropFirst(offset).prefix(count).map {
                    #"{"authorizer_appid":"\#($0.key)","refresh_token":"\#($0.value)","auth_time":1700000000}"#
                }
                return #"{"total_count":\#(items.count),"list":[\#(page.joined(separator: ","))]}"#
            default:
                // Any other API (the proxy's and customer-service calls) takes an authorizer access token.
                guard let access = Self.parameter(query, "access_token"), s.accessTokens[access] != nil else {
                    return Self.error(40001, "invalid credential, access_token is invalid or not latest")
                }
                return #"{"errcode":0,"errmsg":"ok","path":"\#(path)"}"#
            }
        }
    }

    static func error(_ code: Int, _ message: String) -> String { #"{"errcode":\#(code),"errmsg":"\#(message) rid: fake"}"# }

    static func parameter(_ query: String, _ name: String) -> String? {
        query.split(separator: "&").first { $0.hasPrefix(name + "=") }.map { String($0.dropFirst(name.count + 1)).removingPercentEncoding ?? "" }
    }

    /// Runs the fake for the duration of `body`, which gets its base URL.
    public static func run<T: Sendable>(_ body: @Sendable (FakeWeChat, String) async throws -> T) async throws -> T {
        let fake = FakeWeChat()
        let router = Router()
        router.on("/**", method: .post) { request, _ -> Response in
            let data = try await request.body.collect(upTo: 1 << 20)
            var fields: [String: String] = [:]
            if let object = try? JSONSerialization.jsonObject(with: Data(data.readableBytesView)) as? [String: Any] {
                for (key, value) in object { fields[key] = "\(value)" }
            }
            if let delay = fake.delay(for: request.uri.path) { try? await Task.sleep(for: delay) }
            guard await fake.passGate(for: request.uri.path) else {
                return Response(status: .ok, headers: [.contentType: "application/json"],
                                body: .init(byteBuffer: ByteBuffer(string: FakeWeChat.error(-1, "system error: called alone (held for company)"))))
            }
            let answer = fake.handle(path: request.uri.path, query: request.uri.query ?? "", body: fields)
            guard fake.trickles(request.uri.path) else {
                return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: answer)))
            }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .trickling("{", filler: " "))
        }
        router.on("/**", method: .get) { request, _ -> Response in
            let answer = fake.handle(path: request.uri.path, query: request.uri.query ?? "", body: [:])
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: answer)))
        }
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        var logger = Logger(label: "fake-wechat")
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { continuation.yield($0.localAddress?.port ?? 0) }, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else { throw TimeoutError(description: "fake WeChat did not start") }
            do {
                let result = try await body(fake, "http://127.0.0.1:\(port)")
                await group.triggerGracefulShutdown()
                return result
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
        }
    }
}
