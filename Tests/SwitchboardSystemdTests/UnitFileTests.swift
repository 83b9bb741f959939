import Foundation
import Testing

/// Checks the shipped unit files with systemd's own tools (offline: no running
/// systemd is needed). Skipped where the tools are not installed.
@Suite("systemd unit files")
struct UnitFileTests {
    static let analyze = "/usr/bin/systemd-analyze"

    private func unitPath(_ name: String) throws -> String {
        let root = try #require(repositoryRoot(), "repository root not found from \(#filePath)")
        return root + "/systemd/" + name
    }

    @Test(.enabled(if: isExecutable(analyze)))
    func securityExposureIsAtMostTwo() throws {
        let unit = try unitPath("switchboard.service")
        let result = try run(Self.analyze, ["security", "--offline=yes", "--no-pager", unit])
        let line = try #require(
            result.output.split(separator: "\n").first { $0.contains("Overall exposure level") },
            "no exposure line in output:\n\(result.output)"
        )
        // "→ Overall exposure level for switchboard.service: 1.1 OK 🙂"
        let match = try #require(line.firstMatch(of: #/: (\d+\.\d+) /#), "cannot parse: \(line)")
        let exposure = try #require(Double(match.1))
        #expect(exposure <= 2.0, "\(line)")
    }

    @Test(.enabled(if: isExecutable(analyze)))
    func unitsVerify() throws {
        for name in ["switchboard.service", "switchboard.socket", "switchboard-public.socket"] {
            let result = try run(Self.analyze, ["verify", "--no-pager", try unitPath(name)])
            // The only acceptable complaint is the daemon binary not being installed here.
            let problems = result.output.split(separator: "\n").filter {
                !$0.contains("/usr/bin/switchboard is not executable")
            }
            #expect(problems.isEmpty, "\(name): \(problems.joined(separator: "\n"))")
        }
    }

    @Test func socketAndServiceAgree() throws {
        let service = try String(contentsOfFile: try unitPath("switchboard.service"), encoding: .utf8)
        let api = try String(contentsOfFile: try unitPath("switchboard.socket"), encoding: .utf8)
        let publicSocket = try String(contentsOfFile: try unitPath("switchboard-public.socket"), encoding: .utf8)
        let settings = { (text: String) in
            Set(text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.hasPrefix("#") })
        }
        let serviceLines = settings(service)
        #expect(serviceLines.contains("Type=notify"))
        #expect(serviceLines.contains("RuntimeDirectory=switchboard"))
        #expect(serviceLines.contains("RuntimeDirectoryPreserve=yes"))
        #expect(serviceLines.contains("WatchdogSec=30s"))
        #expect(serviceLines.contains("RestartPreventExitStatus=78"))
        #expect(serviceLines.contains("Wants=switchboard.socket"))
        #expect(!serviceLines.contains { $0.hasPrefix("Requires=") && $0.contains("switchboard-public.socket") })

        let apiLines = settings(api)
        #expect(apiLines.contains("ListenStream=/run/switchboard/api.sock"))
        #expect(apiLines.contains("FileDescriptorName=api"))
        #expect(apiLines.contains("SocketMode=0660"))
        #expect(apiLines.contains("SocketGroup=switchboard-api"))
        #expect(apiLines.contains("Service=switchboard.service"))

        let publicLines = settings(publicSocket)
        #expect(publicLines.contains("FileDescriptorName=public"))
        #expect(publicLines.contains("Service=switchboard.service"))
    }

    /// Creates the users in a scratch root with systemd-sysusers, then the directories
    /// with systemd-tmpfiles, and checks owners and modes. Needs root (chown).
    @Test(.enabled(if: geteuid() == 0 && isExecutable("/usr/bin/systemd-sysusers") && isExecutable("/usr/bin/systemd-tmpfiles")))
    func sysusersAndTmpfilesApply() throws {
        let root = try TemporaryDirectory()
        defer { root.remove() }
        try FileManager.default.createDirectory(atPath: root.file("etc"), withIntermediateDirectories: true)

        let sysusers = try String(contentsOfFile: try unitPath("switchboard.sysusers"), encoding: .utf8)
        let users = try run("/usr/bin/systemd-sysusers", ["--root=\(root.path)", "-"], stdin: sysusers)
        #expect(users.status == 0, "\(users.output)")
        let passwd = try String(contentsOfFile: root.file("etc/passwd"), encoding: .utf8)
        let group = try String(contentsOfFile: root.file("etc/group"), encoding: .utf8)
        let userLine = try #require(passwd.split(separator: "\n").first { $0.hasPrefix("switchboard:") })
        #expect(userLine.hasSuffix(":/var/lib/switchboard:/usr/sbin/nologin"))
        #expect(group.split(separator: "\n").contains { $0.hasPrefix("switchboard-api:") })
        let uid = try #require(Int(userLine.split(separator: ":")[2]))

        let tmpfiles = try String(contentsOfFile: try unitPath("switchboard.tmpfiles"), encoding: .utf8)
        let dirs = try run("/usr/bin/systemd-tmpfiles", ["--create", "--root=\(root.path)", "-"], stdin: tmpfiles)
        #expect(dirs.status == 0, "\(dirs.output)")
        for (path, mode) in [("var/lib/switchboard", 0o750), ("var/lib/switchboard/media", 0o750), ("run/switchboard", 0o755)] {
            let attributes = try FileManager.default.attributesOfItem(atPath: root.file(path))
            #expect((attributes[.ownerAccountID] as? NSNumber)?.intValue == uid, "\(path) owner")
            #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == mode, "\(path) mode")
        }
    }
}
