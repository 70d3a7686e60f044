import Foundation
import PostgresNIO
import RelayCore

extension PostgresRelayStore {
    public func componentToken(appid: String) async throws -> StoredToken? {
        guard let row = try await fetch("SELECT * FROM component_tokens WHERE component_appid = \(appid)").first else { return nil }
        return StoredToken(token: try sealer.open(try row["access_token"].decode(String.self)),
                           expiresAt: Self.date(try row["expires_at"].decode(Int.self)))
    }

    public func saveComponentToken(appid: String, _ token: StoredToken) async throws {
        _ = try await fetch(
            """
            INSERT INTO component_tokens (component_appid, access_token, expires_at)
            VALUES (\(appid), \(sealer.seal(token.token)), \(Self.millis(token.expiresAt)))
            ON CONFLICT (component_appid) DO UPDATE SET access_token = excluded.access_token, expires_at = excluded.expires_at
            """)
    }

    /// A lease row, not `pg_advisory_lock`: the lock is held across a call to WeChat, longer than
    /// any one pooled connection is ours, and a row lease also lapses by itself if its node dies.
    /// The upsert is atomic, so of two nodes asking at once exactly one gets it.
    public func acquireLock(name: String, owner: String, until: Date, now: Date) async throws -> Bool {
        !(try await fetch(
            """
            INSERT INTO locks (name, owner, expires_at) VALUES (\(name), \(owner), \(Self.millis(until)))
            ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
            WHERE locks.expires_at <= \(Self.millis(now)) OR locks.owner = excluded.owner
            RETURNING owner
            """).isEmpty)
    }

    public func releaseLock(name: String, owner: String) async throws {
        _ = try await fetch("DELETE FROM locks WHERE name = \(name) AND owner = \(owner)")
    }

    public func authorizer(appid: String) async throws -> Authorizer? {
        try await fetch("SELECT * FROM authorizers WHERE appid = \(appid)").first.map(authorizer(from:))
    }

    public func authorizers() async throws -> [Authorizer] {
        try await fetch("SELECT * FROM authorizers ORDER BY authorized_at, appid").map(authorizer(from:))
    }

    public func saveAuthorizer(_ a: Authorizer) async throws {
        _ = try await fetch(
            """
            INSERT INTO authorizers (appid, component_appid, name, type, user_name, status, permissions, refresh_token,
                                     access_token, access_token_expires_at, authorized_at, version)
            VALUES (\(a.appid), \(a.componentAppid), \(a.name), \(a.type), \(a.userName), \(a.status.rawValue), \(a.permissions),
                    \(a.refreshToken.map(sealer.seal)), \(a.accessToken.map { sealer.seal($0.token) }),
                    \(a.accessToken.map { Self.millis($0.expiresAt) }), \(Self.millis(a.authorizedAt)), 1)
            ON CONFLICT (appid) DO UPDATE SET component_appid = excluded.component_appid, name = excluded.name, type = excluded.type,
                user_name = excluded.user_name, status = excluded.status, permissions = excluded.permissions,
                refresh_token = excluded.refresh_token, access_token = excluded.access_token,
                access_token_expires_at = excluded.access_token_expires_at, authorized_at = excluded.authorized_at,
                version = authorizers.version + 1
            """)
    }

    public func saveAuthorizerTokens(appid: String, expectedVersion: Int, accessToken: StoredToken, refreshToken: String) async throws -> Bool {
        !(try await fetch(
            """
            UPDATE authorizers SET access_token = \(sealer.seal(accessToken.token)),
                access_token_expires_at = \(Self.millis(accessToken.expiresAt)), refresh_token = \(sealer.seal(refreshToken)),
                version = version + 1
            WHERE appid = \(appid) AND version = \(expectedVersion) AND status = 'active' RETURNING appid
            """).isEmpty)
    }

    public func revokeAuthorizer(appid: String) async throws {
        _ = try await fetch(
            """
            UPDATE authorizers SET status = 'revoked', refresh_token = NULL, access_token = NULL, access_token_expires_at = NULL,
                version = version + 1
            WHERE appid = \(appid)
            """)
    }

    public func exchangedCode(_ code: String) async throws -> String? {
        try await fetch("SELECT authorizer_appid FROM exchanged_codes WHERE code = \(code)").first?["authorizer_appid"].decode(String.self)
    }

    public func recordExchange(code: String, authorizerAppid: String, at date: Date) async throws {
        _ = try await fetch(
            """
            INSERT INTO exchanged_codes (code, authorizer_appid, exchanged_at) VALUES (\(code), \(authorizerAppid), \(Self.millis(date)))
            ON CONFLICT DO NOTHING
            """)
    }

    private func authorizer(from row: PostgresRandomAccessRow) throws -> Authorizer {
        let access = try row["access_token"].decode(String?.self).map { token in
            StoredToken(token: try sealer.open(token), expiresAt: Self.date(try row["access_token_expires_at"].decode(Int.self)))
        }
        return Authorizer(
            appid: try row["appid"].decode(String.self), componentAppid: try row["component_appid"].decode(String.self),
            name: try row["name"].decode(String?.self), type: try row["type"].decode(String?.self),
            userName: try row["user_name"].decode(String?.self),
            status: Authorizer.Status(rawValue: try row["status"].decode(String.self)) ?? .revoked,
            permissions: try row["permissions"].decode([Int].self),
            refreshToken: try row["refresh_token"].decode(String?.self).map(sealer.open), accessToken: access,
            authorizedAt: Self.date(try row["authorized_at"].decode(Int.self)), version: try row["version"].decode(Int.self))
    }
}
