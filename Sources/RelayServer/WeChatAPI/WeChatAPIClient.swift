import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import WeChatXML

/// Calls WeChat's component APIs at `wechat.api_base`. Every call is counted by API and errcode;
/// `errcode` answers become `WeChatAPIError`s. Tokens travel in query strings and are never logged.
struct WeChatAPIClient: Sendable {
    let client: HTTPClient
    let baseURL: String
    let metrics: RelayMetrics
    var timeout: Duration = .seconds(10)

    /// POSTs `body` to `path` and decodes the answer as `Answer`, after checking `errcode`.
    func call<Answer: Decodable>(_ api: String, path: String, query: [(String, String)] = [], body: JSONValue,
                                 as: Answer.Type = Answer.self) async throws -> Answer {
        let data = try await post(api, path: path, query: query, body: Data(body.serialized.utf8))
        do {
            return try JSONDecoder().decode(Answer.self, from: data)
        } catch {
            metrics.wechatCall(api: api, errcode: -3)
            throw WeChatAPIError(api: api, errcode: -3, errmsg: "unexpected answer: \(error)")
        }
    }

    /// Raw POST with the errcode check; returns the answer bytes.
    func post(_ api: String, path: String, query: [(String, String)], body: Data) async throws -> Data {
        var request = HTTPClientRequest(url: url(path: path, query: query))
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
        request.body = .bytes(ByteBuffer(bytes: body))
        let data: Data
        do {
            let deadline = ContinuousClock.now + timeout
            let response = try await client.execute(request, timeout: .nanoseconds(timeout.nanoseconds))
            data = Data(try await response.body(upTo: 4 << 20, pastLimit: .fail, by: deadline).readableBytesView)
            guard (200..<300).contains(response.status.code) else {
                metrics.wechatCall(api: api, errcode: -2)
                throw WeChatAPIError(api: api, errcode: -2, errmsg: "HTTP \(response.status.code)")
            }
        } catch let error as WeChatAPIError {
            throw error
        } catch where error is CancellationError || (error as? HTTPClientError) == .cancelled {
            // The caller gave up (a shutdown): not WeChat's failure, so not counted as one (an
            // alert on errcode -2 must mean WeChat cannot be reached).
            throw CancellationError()
        } catch {
            metrics.wechatCall(api: api, errcode: -2)
            throw WeChatAPIError(api: api, errcode: -2, errmsg: OutboundError.describe(error))
        }
        let status = (try? JSONDecoder().decode(ErrorAnswer.self, from: data)) ?? ErrorAnswer(errcode: nil, errmsg: nil)
        let errcode = status.errcode ?? 0
        metrics.wechatCall(api: api, errcode: errcode)
        guard errcode == 0 else { throw WeChatAPIError(api: api, errcode: errcode, errmsg: status.errmsg ?? "") }
        return data
    }

    func url(path: String, query: [(String, String)]) -> String {
        let base = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        guard !query.isEmpty else { return base + path }
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~"))
        let encoded = query.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? $0.1)" }
        return base + path + (path.contains("?") ? "&" : "?") + encoded.joined(separator: "&")
    }

    private struct ErrorAnswer: Decodable {
        let errcode: Int?
        let errmsg: String?
    }
}
