import Foundation
import Testing
@testable import SwitchboardSystemd

@Suite("Credentials")
struct CredentialsTests {
    @Test func directoryComesFromTheEnvironment() {
        #expect(Credentials.directory(environment: [:]) == nil)
        #expect(Credentials.directory(environment: ["CREDENTIALS_DIRECTORY": ""]) == nil)
        #expect(Credentials.directory(environment: ["CREDENTIALS_DIRECTORY": "/run/credentials/switchboard.service"])
            == "/run/credentials/switchboard.service")
    }

    @Test func resolution() {
        let systemd = ["CREDENTIALS_DIRECTORY": "/run/credentials/switchboard.service"]
        #expect(Credentials.resolve(path: "wa-token", environment: systemd) == "/run/credentials/switchboard.service/wa-token")
        #expect(Credentials.resolve(path: "/etc/secret", environment: systemd) == "/etc/secret")
        #expect(Credentials.resolve(path: "x", environment: ["CREDENTIALS_DIRECTORY": "/creds/"]) == "/creds/x")

        let cwd = FileManager.default.currentDirectoryPath
        #expect(Credentials.resolve(path: "wa-token", environment: [:]) == cwd + "/wa-token")
        #expect(Credentials.resolve(path: "secrets/wa-token", environment: [:]) == cwd + "/secrets/wa-token")
        #expect(Credentials.resolve(path: "/etc/secret", environment: [:]) == "/etc/secret")
    }

    @Test func readsACredentialByName() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        _ = try directory.write("wa-token", "EAAG-token-value\n")
        let environment = ["CREDENTIALS_DIRECTORY": directory.path]
        #expect(try Credentials.readSecret(path: "wa-token", environment: environment) == "EAAG-token-value")
    }

    @Test func readsAnAbsolutePathWithoutCredentialsDirectory() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write("token", "abc")
        #expect(try Credentials.readSecret(path: path, environment: [:]) == "abc")
    }

    @Test(arguments: [
        ("abc\n", "abc"),
        ("abc", "abc"),
        ("abc\n\n", "abc\n"),
        ("abc\r\n", "abc"),
        (" abc \n", " abc "),
        ("line1\nline2\n", "line1\nline2"),
        ("\n", ""),
        ("", ""),
    ])
    func trimsExactlyOneTrailingNewline(content: String, expected: String) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write("secret", content)
        #expect(try Credentials.readSecret(path: path, environment: [:]) == expected)
    }

    @Test func missingCredentialNamesThePathAndTheFix() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let environment = ["CREDENTIALS_DIRECTORY": directory.path]
        let error = try #require(throws: CredentialError.self) {
            try Credentials.readSecret(path: "imap-password", environment: environment)
        }
        #expect(error.path == directory.file("imap-password"))
        #expect(error.reason == .cannotOpen(errno: ENOENT))
        #expect(error.isCredential)
        #expect(error.description.contains(directory.file("imap-password")))
        #expect(error.description.contains("LoadCredential=imap-password:"))
    }

    @Test func missingPlainFileHasNoCredentialHint() throws {
        let error = try #require(throws: CredentialError.self) {
            try Credentials.readSecret(path: "/nonexistent/switchboard/secret", environment: [:])
        }
        #expect(!error.isCredential)
        #expect(error.description.hasPrefix("cannot read secret file /nonexistent/switchboard/secret: "))
        #expect(!error.description.contains("LoadCredential"))
    }

    @Test func errorsNeverContainTheSecret() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        // Invalid UTF-8 around a recognisable secret.
        let path = try directory.write("token", bytes: Array("hunter2-".utf8) + [0xFF, 0xFE] + Array("-hunter2".utf8))
        let error = try #require(throws: CredentialError.self) {
            try Credentials.readSecret(path: path, environment: [:])
        }
        #expect(error.reason == .notUTF8)
        #expect(!error.description.contains("hunter2"))
        #expect(!"\(error)".contains("hunter2"))
        #expect(!String(reflecting: error).contains("hunter2"))
    }

    @Test func directoriesAndHugeFilesAreRefused() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let error = try #require(throws: CredentialError.self) {
            try Credentials.readSecret(path: directory.path, environment: [:])
        }
        #expect(error.reason == .isDirectory)

        let big = try directory.write("big", bytes: [UInt8](repeating: UInt8(ascii: "a"), count: Credentials.maximumSecretSize + 1))
        let tooLarge = try #require(throws: CredentialError.self) {
            try Credentials.readSecret(path: big, environment: [:])
        }
        #expect(tooLarge.reason == .tooLarge(limit: Credentials.maximumSecretSize))

        let exact = try directory.write("exact", bytes: [UInt8](repeating: UInt8(ascii: "b"), count: Credentials.maximumSecretSize))
        #expect(try Credentials.readSecret(path: exact, environment: [:]).utf8.count == Credentials.maximumSecretSize)
    }

    @Test func unreadableFileReportsPermission() throws {
        // Root reads anything, so the refusal can only be checked as another user.
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write("locked", "secret")
        chmod(path, 0)
        if geteuid() == 0 {
            #expect(try Credentials.readSecret(path: path, environment: [:]) == "secret")
        } else {
            let error = try #require(throws: CredentialError.self) {
                try Credentials.readSecret(path: path, environment: [:])
            }
            #expect(error.reason == .cannotOpen(errno: EACCES))
        }
    }
}
