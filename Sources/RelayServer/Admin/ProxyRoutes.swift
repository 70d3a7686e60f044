import AsyncHTTPClient
import Foundation
import Hummingbird
import NIOCore
import NIOHTTP1
import RelayCore

/// `ANY /v1/wechat/{appid}/{api path}`: calls a WeChat API with the authorizer's token injected as
/// `access_token`, query and body passed through, WeChat's answer returned unwrapped. On an
/// invalid or expired token (40001, 40014, 42001) it refreshes once and retries once.
struct ProxyRoutes: Sendable {
    let tokens: TokenService
    let api: WeChatAPIClient
    static let maxBodyBytes = 16 << 20

    func register(on group: RouterGroup<RelayRequestContext>) {
        for method in [HTTPRequest.Method.get, .post, .put, .delete, .patch] {
            group.on("wechat/{appid}/**", method: method) { request, context in try await proxy(request, context) }
        }
    }

    private func proxy(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let appid = context.parameters.get("appid") ?? ""
        let path = "/" + context.parameters.getCatchAll().joined(separator: "/")
        let query = (request.uri.query ?? "").split(separator: "&").filter { !$0.hasPrefix("access_token=") }.map(String.init)
        let body = try await request.body.collect(upTo: Self.maxBodyBytes)
        let contentType = request.headers[.contentType]
        var answer = try await forward(request.method, appid: appid, path: path, query: query, body: body, contentType: contentType, force: false)
        if Self.isTokenError(answer.body) {
            answer = try await forward(request.method, appid: appid, path: path, query: query, body: body, contentType: contentType, force: true)
        }
        var headers: HTTPFields = [:]
        if let type = answer.contentType { headers[.contentType] = type }
        return Response(status: .init(code: answer.status), headers: headers, body: .init(byteBuffer: answer.body))
    }

    private func forward(_ method: HTTPRequest.Method, appid: String, path: String, query: [String], body: ByteBuffer,
                         contentType: String?, force: Bool) async throws -> (status: Int, contentType: String?, body: ByteBuffer) {
        let token = try await mapped { try await tokens.authorizerToken(appid, force: force) }
        let url = api.url(path: path, query: []) + "?" + (query + ["access_token=\(AuthLinkBuilder.encode(token.token))"]).joined(separator: "&")
        var outbound = HTTPClientRequest(url: url)
        outbound.method = HTTPMethod(rawValue: method.rawValue)
        if let contentType { outbound.headers.add(name: "Content-Type", value: contentType) }
        if body.readableBytes > 0 { outbound.body = .bytes(body) }
        do {
            let deadline = ContinuousClock.now + .seconds(30)
            let response = try await api.client.execute(outbound, timeout: .seconds(30))
            let bytes = try await response.body(upTo: Self.maxBodyBytes, pastLimit: .fail, by: deadline)
            api.metrics.wechatCall(api: "proxy", errcode: Self.errcode(bytes) ?? 0)
            return (Int(response.status.code), response.headers.first(name: "Content-Type"), bytes)
        } catch {
            api.metrics.wechatCall(api: "proxy", errcode: -2)
            throw AdminError(status: .badGateway, code: "wechat_unreachable", message: "WeChat did not answer: \(OutboundError.describe(error))")
        }
    }

    static func errcode(_ body: ByteBuffer) -> Int? {
        struct Answer: Decodable { let errcode: Int? }
        return (try? JSONDecoder().decode(Answer.self, from: Data(body.readableBytesView)))?.errcode
    }

    static func isTokenError(_ body: ByteBuffer) -> Bool {
        [40001, 40014, 42001].contains(errcode(body) ?? 0)
    }
}
