import Foundation
import WeChatXML

/// The component APIs of WeChat's Open Platform (protocol notes, section 6).
extension WeChatAPIClient {
    struct ComponentToken: Decodable, Sendable {
        let component_access_token: String
        let expires_in: Int
    }

    func componentToken(appid: String, secret: String, ticket: String) async throws -> ComponentToken {
        try await call("api_component_token", path: "/cgi-bin/component/api_component_token", body: .object([
            ("component_appid", .string(appid)), ("component_appsecret", .string(secret)), ("component_verify_ticket", .string(ticket)),
        ]))
    }

    private struct Empty: Decodable {}

    func startPushTicket(appid: String, secret: String) async throws {
        _ = try await call("api_start_push_ticket", path: "/cgi-bin/component/api_start_push_ticket", body: .object([
            ("component_appid", .string(appid)), ("component_secret", .string(secret)),
        ]), as: Empty.self)
    }

    struct PreAuthCode: Decodable, Sendable {
        let pre_auth_code: String
        let expires_in: Int
    }

    func createPreAuthCode(appid: String, token: String) async throws -> PreAuthCode {
        try await call("api_create_preauthcode", path: "/cgi-bin/component/api_create_preauthcode",
                       query: [("component_access_token", token)], body: .object([("component_appid", .string(appid))]))
    }

    struct FuncInfo: Decodable, Sendable {
        struct Category: Decodable, Sendable { let id: Int }
        let funcscope_category: Category
    }

    struct AuthorizationInfo: Decodable, Sendable {
        let authorizer_appid: String
        let authorizer_access_token: String?
        let expires_in: Int?
        let authorizer_refresh_token: String?
        let func_info: [FuncInfo]?
    }

    private struct QueryAuthAnswer: Decodable {
        let authorization_info: AuthorizationInfo
    }

    func queryAuth(appid: String, token: String, code: String) async throws -> AuthorizationInfo {
        try await call("api_query_auth", path: "/cgi-bin/component/api_query_auth", query: [("component_access_token", token)],
                       body: .object([("component_appid", .string(appid)), ("authorization_code", .string(code))]),
                       as: QueryAuthAnswer.self).authorization_info
    }

    struct AuthorizerToken: Decodable, Sendable {
        let authorizer_access_token: String
        let expires_in: Int
        let authorizer_refresh_token: String?
    }

    func authorizerToken(appid: String, token: String, authorizer: String, refreshToken: String) async throws -> AuthorizerToken {
        try await call("api_authorizer_token", path: "/cgi-bin/component/api_authorizer_token",
                       query: [("component_access_token", token)], body: .object([
                           ("component_appid", .string(appid)), ("authorizer_appid", .string(authorizer)),
                           ("authorizer_refresh_token", .string(refreshToken)),
                       ]))
    }

    struct AuthorizerInfo: Decodable, Sendable {
        struct TypeInfo: Decodable, Sendable { let id: Int }
        struct Info: Decodable, Sendable {
            let nick_name: String?
            let user_name: String?
            let principal_name: String?
            let service_type_info: TypeInfo?
            let verify_type_info: TypeInfo?
            let MiniProgramInfo: MiniProgram?
        }
        struct MiniProgram: Decodable, Sendable {}
        let authorizer_info: Info
        let authorization_info: AuthorizationInfo?

        /// `official_account` or `mini_program` (MiniProgramInfo present).
        var kind: String { authorizer_info.MiniProgramInfo == nil ? "official_account" : "mini_program" }
    }

    func authorizerInfo(appid: String, token: String, authorizer: String) async throws -> AuthorizerInfo {
        try await call("api_get_authorizer_info", path: "/cgi-bin/component/api_get_authorizer_info",
                       query: [("component_access_token", token)],
                       body: .object([("component_appid", .string(appid)), ("authorizer_appid", .string(authorizer))]))
    }

    struct AuthorizerList: Decodable, Sendable {
        struct Item: Decodable, Sendable {
            let authorizer_appid: String
            let refresh_token: String?
            let auth_time: Int?
        }
        let total_count: Int
        let list: [Item]
    }

    func authorizerList(appid: String, token: String, offset: Int, count: Int) async throws -> AuthorizerList {
        try await call("api_get_authorizer_list", path: "/cgi-bin/component/api_get_authorizer_list",
                       query: [("component_access_token", token)], body: .object([
                           ("component_appid", .string(appid)), ("offset", .number(Double(offset))), ("count", .number(Double(count))),
                       ]))
    }
}
