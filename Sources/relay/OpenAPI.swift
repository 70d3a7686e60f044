import ArgumentParser
import RelayServer

struct OpenAPI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "openapi",
        abstract: "Print the admin API's OpenAPI 3.1 document (YAML); a running relay also serves it at GET /v1/openapi.yaml.")

    func run() {
        print(OpenAPIDocument.yaml, terminator: "")
    }
}
