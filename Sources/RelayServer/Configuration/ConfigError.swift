/// A mistake in `relay.yml`, naming the key by its full path so the operator can find it.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    /// The key's path, e.g. `wechat.components[0].encoding_aes_key`.
    public let path: String
    public let problem: String

    public init(_ path: String, _ problem: String) {
        self.path = path
        self.problem = problem
    }

    public var description: String { path.isEmpty ? problem : "\(path): \(problem)" }
}
