import Hummingbird
import NIOCore

/// The admin API's OpenAPI document (`Admin/openapi.yaml`, compiled in). Tests keep it and the
/// routes in step: every `/v1` route is documented and every documented operation exists.
public enum OpenAPIDocument {
    public static var yaml: String { String(decoding: PackageResources.openapi_yaml, as: UTF8.self) }

    static func register(on group: RouterGroup<RelayRequestContext>) {
        group.get("openapi.yaml") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/yaml; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(bytes: PackageResources.openapi_yaml)))
        }
    }
}
