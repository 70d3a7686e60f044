import Foundation
import RelayCore
import SQLiteNIO

extension SQLiteRelayStore {
    public func componentToken(appid: String) async throws -> StoredToken? {
        guard let row = try await reader.query("SELECT * FROM component_tokens WHERE component_appid = ?", [.text(appid)]).first
        else { return nil }
        return StoredToken(token: try sealer.open(row.column("access_token")?.string ?? ""), expiresAt: Self.date(row.column("expires_at")))
    }

    public func saveComponentToken(appid: String, _ token: StoredToken) async throws {
        let sealed = sealer.seal(token.token)
        try await write { db in
            _ = try db.query(
                """
                INSERT INTO component_tokens (component_appid, access_token, expires_at) VALUES (?, ?, ?)
                ON CONFLICT (component_appid) DO UPDATE SET access_token = excluded.access_token, expires_at = excluded.expires_at
                """, [.text(appid), .text(sealed), .integer(Self.millis(token.expiresAt))])
        }
    }

    public func acquireLock(name: String, owner: String, until: Date, now: Date) async throws -> Bool {
        try await write { db in
            let rows = try db.query(
                """
                INSERT INTO locks (name, owner, expires_at) VALUES (?1, ?2, ?3)
                ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
                WHERE locks.expires_at <= ?4 OR locks.owner = ?2
                RETURNING owner
                """, [.text(name), .text(owner), .integer(Self.millis(until)), .integer(Self.millis(now))])
            return !rows.isEmpty
        }
    }

    public func releaseLock(name: String, owner: String) async throws {
        try await write { db in
            _ = try db.query("DELETE FROM locks WHERE name = ? AND owner = ?", [.text(name), .text(owner)])
        }
    }

    public func authorizer(appid: String) async throws -> Authorizer? {
        try await reader.query("SELECT * FROM authorizers WHERE appid = ?", [.text(appid)]).first.map(authorizer(from:))
    }

    public func authorizers() async throws -> [Authorizer] {
        try await reader.query("SELECT * FROM authorizers ORDER BY authorized_at, appid").map(authorizer(from:))
    }

    public func saveAuthorizer(_ a: Authorizer) async throws {
        let permissions = String(decoding: try JSONEncoder().encode(a.permissions), as: UTF8.self)
        let binds: [SQLiteData] = [
            .text(a.appid), .text(a.componentAppid), Self.text(a.name), Self.text(a.type), Self.text(a.userName), .text(a.status.rawValue),
            .text(permissions), Self.text(a.refreshToken.map(sealer.seal)), Self.text(a.accessToken.map { sealer.seal($0.token) }),
            a.accessToken.map { .integer(Self.millis($0.expiresAt)) } ?? .null, .integer(Self.millis(a.authorizedAt)),
        ]
        try await write { db in
            _ = try db.query(
                """
                INSERT INTO authorizers (appid, component_appid, name, type, user_name, status, permissions, refresh_token,
                                         access_token, access_token_expires_at, authorized_at, version)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 1)
                ON CONFLICT (appid) DO UPDATE SET component_appid = ?2, name = ?3, type = ?4, user_name = ?5, status = ?6,
                    permissions = ?7, refresh_token = ?8, access_token = ?9, access_token_expires_at = ?10, authorized_at = ?11,
                    version = authorizers.version + 1
                """, binds)
        }
    }

    public func saveAuthorizerTokens(appid: String, expectedVersion: Int, accessToken: StoredToken, refreshToken: String) async throws -> Bool {
        let binds: [SQLiteData] = [
            .text(sealer.seal(accessToken.token)), .integer(Self.millis(accessToken.expiresAt)), .text(sealer.seal(refreshToken)),
            .text(appid), .integer(expectedVersion),
        ]
        return try await write { db in
            !(try db.query(
                """
                UPDATE authorizers SET access_token = ?, access_token_expires_at = ?, refresh_token = ?, version = version + 1
                WHERE appid = ? AND version = ? AND status = 'active' RETURNING appid
                """, binds)).isEmpty
        }
    }

    public func revokeAuthorizer(appid: String) async throws {
        try await write { db in
            _ = try db.query(
                """
                UPDATE authorizers SET status = 'revoked', refresh_token = NULL, access_token = NULL, access_token_expires_at = NULL,
                    version = version + 1 WHERE appid = ?
                """, [.text(appid)])
        }
    }

    public func exchangedCode(_ code: String) async throws -> String? {
        try await reader.query("SELECT authorizer_appid FROM exchanged_codes WHERE code = ?", [.text(code)]).first?
            .column("authorizer_appid")?.string
    }

    public func recordExchange(code: String, authorizerAppid: String, at date: Date) async throws {
        try await write { db in
            _ = try db.query("INSERT INTO exchanged_codes (code, authorizer_appid, exchanged_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                                   [.text(code), .text(authorizerAppid), .integer(Self.millis(date))])
        }
    }

    private func authorizer(from row: StoreRow) throws -> Authorizer {
        let permissions = (try? JSONDecoder().decode([Int].self, from: Data((row.column("permissions")?.string ?? "[]").utf8))) ?? []
        let access = try row.column("access_token")?.string.map { token in
            StoredToken(token: try sealer.open(token), expiresAt: Self.date(row.column("access_token_expires_at")))
        }
        return Authorizer(
            appid: row.column("appid")?.string ?? "", componentAppid: row.column("component_appid")?.string ?? "",
            name: row.column("name")?.string, type: row.column("type")?.string, userName: row.column("user_name")?.string,
            status: Authorizer.Status(rawValue: row.column("status")?.string ?? "") ?? .revoked, permissions: permissions,
            refreshToken: try row.column("refresh_token")?.string.map(sealer.open), accessToken: access,
            authorizedAt: Self.date(row.column("authorized_at")), version: row.column("version")?.integer ?? 0)
    }
}
