import Testing
@testable import EmailAdapter
