import Foundation

/// A cached WeChat access token and when it stops working.
public struct StoredToken: Sendable, Equatable {
    public let token: String
    public let expiresAt: Date

    public init(token: String, expiresAt: Date) {
        self.token = token
        self.expiresAt = expiresAt
    }

    /// Usable at `now` with `margin` to spare.
    public func isFresh(at now: Date, margin: TimeInterval) -> Bool {
        expiresAt.timeIntervalSince(now) > margin
    }
}

/// An account (Official Account or Mini Program) that authorized a component.
public struct Authorizer: Sendable, Equatable {
    public enum Status: String, Sendable { case active, revoked }

    public var appid: String
    public var componentAppid: String
    public var name: String?
    /// `official_account` or `mini_program`, once the profile is known.
    public var type: String?
    /// The original id (`gh_…`), which pushes carry as `ToUserName`.
    public var userName: String?
    public var status: Status
    /// Granted permission-set ids (`func_info`).
    public var permissions: [Int]
    public var refreshToken: String?
    public var accessToken: StoredToken?
    public var authorizedAt: Date
    /// Bumped on every token change: a refresh saves only if nobody saved in between.
    public var version: Int

    public init(appid: String, componentAppid: String, name: String? = nil, type: String? = nil, userName: String? = nil,
                status: Status = .active, permissions: [Int] = [], refreshToken: String? = nil, accessToken: StoredToken? = nil,
                authorizedAt: Date, version: Int = 0) {
        self.appid = appid
        self.componentAppid = componentAppid
        self.name = name
        self.type = type
        self.userName = userName
        self.status = status
        self.permissions = permissions
        self.refreshToken = refreshToken
        self.accessToken = accessToken
        self.authorizedAt = authorizedAt
        self.version = version
    }
}

/// Durable state of the authorization flow. Implemented by the same stores as `RelayStore`.
public protocol AuthorizationStore: Sendable {
    func componentToken(appid: String) async throws -> StoredToken?
    func saveComponentToken(appid: String, _ token: StoredToken) async throws
    /// Takes the named lock until `until` if it is free or expired; true when this owner holds it.
    func acquireLock(name: String, owner: String, until: Date, now: Date) async throws -> Bool
    func releaseLock(name: String, owner: String) async throws
    func authorizer(appid: String) async throws -> Authorizer?
    func authorizers() async throws -> [Authorizer]
    /// Inserts or replaces an authorizer (from a code exchange or a sync); bumps its version.
    func saveAuthorizer(_ authorizer: Authorizer) async throws
    /// Saves refreshed tokens only if the stored version is still `expectedVersion` (compare and swap).
    func saveAuthorizerTokens(appid: String, expectedVersion: Int, accessToken: StoredToken, refreshToken: String) async throws -> Bool
    /// Marks revoked and deletes its tokens.
    func revokeAuthorizer(appid: String) async throws
    /// The authorizer an authorization code was already exchanged for, if any.
    func exchangedCode(_ code: String) async throws -> String?
    func recordExchange(code: String, authorizerAppid: String, at: Date) async throws
}
