import Foundation
import Testing
@testable import SwitchboardCore

@Test func probe() async throws {
    let p = Part.text(Open(TextFields(text: "hi"), extra: ["type": "evil"]))
    print("ENC", JSON.string(p))
    print("FEB30", Timestamp(rfc3339: "2025-02-30T00:00:00Z") as Any)
    await #expect(processExitsWith: .success) {
        _ = Timestamp(rfc3339: "2025-05-01T10:15:30.1234Z")
    }
}
