import Foundation
import PostgresNIO

/// `storage.url` for PostgreSQL: `postgres://user:password@host:port/database?sslmode=MODE`, read
/// as libpq reads it. Percent-escapes in the user and password are decoded; the port defaults to
/// 5432 and the database to the user's name.
public struct PostgresURL: Sendable {
    public enum SSLMode: String, Sendable, CaseIterable {
        /// Plain TCP.
        case disable
        /// TLS when the server offers it, without checking its certificate (libpq's default).
        case prefer
        /// TLS or nothing, without checking the certificate.
        case require
        /// TLS with the certificate checked against the system's roots and the host name.
        case verifyFull = "verify-full"
    }

    public let host: String
    public let port: Int
    public let user: String
    public let password: String?
    public let database: String
    public let sslMode: SSLMode
    /// Most pooled connections per node.
    public let maxConnections: Int

    /// What is wrong with a URL, said without repeating the URL (it may hold a password).
    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    public init(_ string: String) throws(Invalid) {
        guard let url = URLComponents(string: string), url.scheme == "postgres" || url.scheme == "postgresql" else {
            throw Invalid(description: "expected postgres://user:password@host:port/database")
        }
        guard let host = url.host, !host.isEmpty else { throw Invalid(description: "the PostgreSQL URL names no host") }
        guard let user = url.user, !user.isEmpty else { throw Invalid(description: "the PostgreSQL URL names no user") }
        self.host = host
        self.port = url.port ?? 5432
        self.user = user.removingPercentEncoding ?? user
        self.password = url.password.map { $0.removingPercentEncoding ?? $0 }
        let path = url.path.hasPrefix("/") ? String(url.path.dropFirst()) : url.path
        self.database = path.isEmpty ? self.user : path
        var sslMode = SSLMode.prefer
        var maxConnections = 20
        for item in url.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                guard let mode = item.value.flatMap(SSLMode.init(rawValue:)) else {
                    throw Invalid(description: "sslmode must be one of \(SSLMode.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                sslMode = mode
            case "max_connections":
                guard let value = item.value.flatMap(Int.init), (1...1000).contains(value) else {
                    throw Invalid(description: "max_connections must be a number from 1 to 1000")
                }
                maxConnections = value
            default:
                throw Invalid(description: "unknown parameter \(item.name) (known: sslmode, max_connections)")
            }
        }
        self.sslMode = sslMode
        self.maxConnections = maxConnections
    }

    /// `host:port/database`, for messages: never the password.
    public var location: String { "\(host):\(port)/\(database)" }

    /// The connection pool's configuration.
    public var configuration: PostgresClient.Configuration {
        let tls: PostgresClient.Configuration.TLS =
            switch sslMode {
            case .disable: .disable
            case .prefer: .prefer(uncheckedTLS)
            case .require: .require(uncheckedTLS)
            case .verifyFull: .require(.makeClientConfiguration())
            }
        var configuration = PostgresClient.Configuration(host: host, port: port, username: user, password: password, database: database,
                                                         tls: tls)
        configuration.options.maximumConnections = maxConnections
        return configuration
    }

    /// The same, for one connection of its own.
    public func connectionConfiguration() throws -> PostgresConnection.Configuration {
        let tls: PostgresConnection.Configuration.TLS =
            switch sslMode {
            case .disable: .disable
            case .prefer: .prefer(try .init(configuration: uncheckedTLS))
            case .require: .require(try .init(configuration: uncheckedTLS))
            case .verifyFull: .require(try .init(configuration: .makeClientConfiguration()))
            }
        return PostgresConnection.Configuration(host: host, port: port, username: user, password: password, database: database, tls: tls)
    }

    private var uncheckedTLS: TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        return configuration
    }
}
