import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import RelayCore
import RelayServer
import WeChatXML

struct Push: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send a correctly encrypted and signed WeChat push to a running relay, using the config's credentials.",
        subcommands: [Text.self, Event.self, Ticket.self, XML.self, WrkScriptCommand.self])

    struct Target: ParsableArguments {
        @OptionGroup var options: ConfigOptions

        @Option(help: "Base URL of the running relay.")
        var url: String = "http://127.0.0.1:8080"

        @Option(help: "Component AppID whose credentials sign the push (default: the first configured).")
        var component: String?

        func credentials() throws -> ComponentCredentials {
            try credentials(in: try options.load())
        }

        func credentials(in config: RelayConfig) throws -> ComponentCredentials {
            let components = config.wechat.components
            if let component {
                guard let match = components.first(where: { $0.appid == component }) else {
                    throw ValidationError("component \(component) is not in \(options.config)")
                }
                return match.credentials
            }
            guard let first = components.first else { throw ValidationError("\(options.config) configures no component") }
            return first.credentials
        }

        /// Sends the push and prints the relay's status and answer; fails unless it is `success`.
        func send(_ push: ComposedPush) async throws {
            var request = HTTPClientRequest(url: url.trimmingSuffix("/") + push.uri)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "text/xml")
            request.body = .bytes(ByteBuffer(string: push.body))
            let (response, body) = try await Self.post(request, to: url)
            print("\(response.status.code) \(body)")
            guard response.status == .ok, body == "success" else { throw ExitCode(1) }
        }

        private static func post(_ request: HTTPClientRequest, to url: String) async throws -> (HTTPClientResponse, String) {
            // A refused connection fails at once: the shared client retries it until its connect
            // timeout, 10 s of nothing when the relay is not running.
            var configuration = HTTPClient.Configuration()
            configuration.connectionPool.retryConnectionEstablishment = false
            let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
            do {
                let response = try await client.execute(request, timeout: .seconds(10))
                let body = String(buffer: try await response.body.collect(upTo: 1 << 20))
                try await client.shutdown()
                return (response, body)
            } catch {
                try? await client.shutdown()
                throw CommandFailure("cannot reach the relay at \(url): \(OutboundError.describe(error)); is relay serve running there?")
            }
        }
    }

    struct Addressing: ParsableArguments {
        @Option(help: "AppID of the authorized account the push is for.")
        var appid: String = "wx1111111111111111"
        @Option(help: "The account's original id (ToUserName).")
        var toUser: String = "gh_0123456789ab"
        @Option(help: "The user's openid (FromUserName).")
        var from: String = "oRelayDemoUser000000000000"

        /// Seals `xml` (made for `now`) with the component's key and sends it to the account's callback URL.
        func send(_ target: Target, xml: (_ now: Int) -> String) async throws {
            let component = try target.credentials()
            let now = Int(Date().timeIntervalSince1970)
            try await target.send(PushComposer.callbackPush(xml: xml(now), appid: appid, toUserName: toUser,
                                                            crypto: component.crypto, timestamp: now, nonce: PushComposer.nonce()))
        }
    }

    struct Text: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A user's text message to an account.")
        @OptionGroup var target: Target
        @OptionGroup var addressing: Addressing
        @Argument(help: "The message text.") var content: String = "hello from relay push"

        func run() async throws {
            let msgId = String(UInt64.random(in: 1_000_000_000_000_000...9_000_000_000_000_000))
            try await addressing.send(target) { now in
                SamplePushes.text(to: addressing.toUser, from: addressing.from, content: content, createTime: now, msgId: msgId)
            }
        }
    }

    struct Event: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "An event (subscribe, CLICK, LOCATION, ...) to an account.")
        @OptionGroup var target: Target
        @OptionGroup var addressing: Addressing
        @Argument(help: "The WeChat Event value.") var event: String = "subscribe"
        @Option(help: "EventKey, if the event has one.") var eventKey: String?

        func run() async throws {
            try await addressing.send(target) { now in
                SamplePushes.event(to: addressing.toUser, from: addressing.from, event: event, eventKey: eventKey, createTime: now)
            }
        }
    }

    struct Ticket: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A component_verify_ticket push to the authorization-event URL.")
        @OptionGroup var target: Target
        @Option(help: "The ticket value.") var ticket: String = "ticket@@@relay-push-demo"

        func run() async throws {
            let component = try target.credentials()
            let now = Int(Date().timeIntervalSince1970)
            let xml = SamplePushes.ticket(component: component.appid, ticket: ticket, createTime: now)
            try await target.send(PushComposer.componentPush(xml: xml, component: component, timestamp: now, nonce: PushComposer.nonce()))
        }
    }

    struct XML: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Any push, from its decrypted XML: an image, a location, a mini program's event, an authorization event…",
            discussion: """
                The file holds the XML as WeChat encrypts it (<xml><ToUserName>…</xml>, from the protocol documents or a \
                captured push). It is sealed and signed with the component's credentials, as WeChat would, and sent to the \
                authorization-event URL when it has an InfoType, else to the account's callback URL (--appid); --to chooses. \
                The relay dedups by MsgId, or else by the whole content: change either to send a file again as a new push.
                """)
        enum Destination: String, ExpressibleByArgument, CaseIterable { case auto, callback, component }

        @OptionGroup var target: Target
        @OptionGroup var addressing: Addressing
        @Argument(help: "The XML file, or - for standard input.") var file: String
        @Option(help: "Which URL: auto (component for an InfoType, else callback), callback or component.") var to: Destination = .auto

        func run() async throws {
            let xml = try Self.read(file)
            let root: XMLNode
            do {
                root = try XMLTreeParser.parse(Array(xml.utf8))
            } catch {
                throw CommandFailure("\(file): not XML the relay would take: \(error)")
            }
            let toComponent = to == .component || (to == .auto && root.child("InfoType") != nil)
            let component = try target.credentials()
            let now = Int(Date().timeIntervalSince1970)
            if toComponent {
                try await target.send(PushComposer.componentPush(xml: xml, component: component, timestamp: now, nonce: PushComposer.nonce()))
            } else {
                // The envelope names the account as the sealed XML does.
                let toUser = root.childText("ToUserName") ?? addressing.toUser
                try await target.send(PushComposer.callbackPush(xml: xml, appid: addressing.appid, toUserName: toUser, crypto: component.crypto,
                                                                timestamp: now, nonce: PushComposer.nonce()))
            }
        }

        static func read(_ file: String) throws -> String {
            if file == "-" {
                let data = FileHandle.standardInput.readDataToEndOfFile()
                guard let text = String(data: data, encoding: .utf8) else { throw CommandFailure("standard input: not UTF-8 text") }
                return text
            }
            do {
                return try String(contentsOfFile: file, encoding: .utf8)
            } catch {
                throw CommandFailure("cannot read \(file): \(error.localizedDescription)")
            }
        }
    }

    struct WrkScriptCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "wrk-script",
            abstract: "Write a wrk Lua script of distinct signed text pushes, and print the wrk command that sends them.",
            discussion: """
                For load from outside the relay's process (another machine, say). The pushes are signed now: the relay \
                accepts them for wechat.max_clock_skew. wrk's threads share the list out (pass their number after --); \
                a thread past the end of its share starts over, and those pushes are answered as duplicates.
                """)
        @OptionGroup var target: Target
        @OptionGroup var addressing: Addressing
        @Option(help: "How many distinct pushes the script holds (about 740 bytes each); past them wrk sends duplicates.") var count = 50_000
        @Option(help: "Where to write the script.") var output = "push.lua"

        func validate() throws {
            guard (1...1_000_000).contains(count) else { throw ValidationError("--count must be between 1 and 1000000") }
        }

        func run() throws {
            let config = try target.options.load()
            let component = try target.credentials(in: config)
            let seconds = config.wechat.maxClockSkew.components.seconds
            let skew = seconds % 60 == 0 ? "\(seconds / 60) min" : "\(seconds) s"
            let now = Int(Date().timeIntervalSince1970)
            let first = UInt64.random(in: 1_000_000_000_000_000...8_000_000_000_000_000)
            let pushes = (0..<count).map { index in
                let xml = SamplePushes.text(to: addressing.toUser, from: addressing.from, content: "wrk load \(index)", createTime: now,
                                            msgId: String(first + UInt64(index)))
                return PushComposer.callbackPush(xml: xml, appid: addressing.appid, toUserName: addressing.toUser, crypto: component.crypto,
                                                 timestamp: now, nonce: PushComposer.nonce())
            }
            let comment = """
                \(count) text pushes to \(addressing.appid), signed by component \(component.appid) at \(now) (Unix time):
                the relay accepts them for \(skew) (wechat.max_clock_skew). Written by `relay push wrk-script`.
                """
            do {
                try WrkScript.render(pushes, comment: comment).write(toFile: output, atomically: true, encoding: .utf8)
            } catch {
                throw CommandFailure("cannot write \(output): \(error.localizedDescription)")
            }
            print("wrote \(output): \(count) distinct text pushes for \(addressing.appid), accepted for \(skew) from now")
            print("wrk -t2 -c64 -d10s -s \(output) \(target.url.trimmingSuffix("/")) -- 2   # the last number: wrk's threads (-t)")
        }
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}
