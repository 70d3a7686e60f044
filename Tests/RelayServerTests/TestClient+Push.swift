import Foundation
import HummingbirdTesting
import NIOCore
import RelayServer

extension TestClientProtocol {
    /// POSTs a composed push and returns the status and body text.
    func send(_ push: ComposedPush) async throws -> (status: Int, body: String) {
        try await execute(uri: push.uri, method: .post, headers: [.contentType: "text/xml"], body: ByteBuffer(string: push.body)) {
            (Int($0.status.code), String(buffer: $0.body))
        }
    }

    /// POSTs raw text to a URI.
    func post(_ uri: String, body: String) async throws -> (status: Int, body: String) {
        try await execute(uri: uri, method: .post, body: ByteBuffer(string: body)) { (Int($0.status.code), String(buffer: $0.body)) }
    }

    /// GETs a URI.
    func get(_ uri: String) async throws -> (status: Int, body: String) {
        try await execute(uri: uri, method: .get) { (Int($0.status.code), String(buffer: $0.body)) }
    }
}
