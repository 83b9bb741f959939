import Foundation
import GRDB
import GRDBSQLite

/// A value bound straight through the SQLite C API (`Statement.runDirect`).
enum DirectArgument {
    case text(String)
    /// UTF-8 text already encoded (a JSON document the store wrote).
    case utf8([UInt8])
    case blob(Data)
    case int(Int64)
    case null

    static func text(_ s: String?) -> DirectArgument { s.map { .text($0) } ?? .null }
}

/// The current row of a statement stepped by `firstRowDirect`, read by column position.
struct DirectRow {
    let statement: OpaquePointer
    func text(_ column: Int32) -> String? {
        guard let p = sqlite3_column_text(statement, column) else { return nil }
        return String(decoding: UnsafeBufferPointer(start: p, count: Int(sqlite3_column_bytes(statement, column))), as: UTF8.self)
    }
    func int(_ column: Int32) -> Int64 { sqlite3_column_int64(statement, column) }
    /// A blob column's bytes (empty for NULL or an empty blob).
    func blob(_ column: Int32) -> Data {
        guard let p = sqlite3_column_blob(statement, column) else { return Data() }
        return Data(bytes: p, count: Int(sqlite3_column_bytes(statement, column)))
    }
}

extension Statement {
    /// Runs this (cached) statement with `arguments` bound through the SQLite C API, and steps it
    /// to the end. For the statements the single ingest writer runs for every message: GRDB's
    /// general path boxes each argument as a `DatabaseValue` and goes through its execution
    /// hooks, which together cost about as much as SQLite's own work for a small insert. Nothing
    /// here observes transactions, so those hooks have nothing to do for these statements.
    func runDirect(_ arguments: DirectArgument...) throws {
        let statement = try bindDirect(arguments)
        defer { sqlite3_reset(statement); sqlite3_clear_bindings(statement) }
        while true {
            switch sqlite3_step(statement) {
            case SQLITE_DONE: return
            case SQLITE_ROW: continue
            case let rc: throw failure(rc)
            }
        }
    }

    /// `runDirect` for a query: `read` gets the first row, if there is one (columns by position).
    func firstRowDirect<T>(_ arguments: DirectArgument..., read: (DirectRow) throws -> T) throws -> T? {
        let statement = try bindDirect(arguments)
        defer { sqlite3_reset(statement); sqlite3_clear_bindings(statement) }
        switch sqlite3_step(statement) {
        case SQLITE_ROW: return try read(DirectRow(statement: statement))
        case SQLITE_DONE: return nil
        case let rc: throw failure(rc)
        }
    }

    /// `runDirect` for a query: `read` gets every row, in order (columns by position).
    func allRowsDirect<T>(_ arguments: DirectArgument..., read: (DirectRow) throws -> T) throws -> [T] {
        let statement = try bindDirect(arguments)
        defer { sqlite3_reset(statement); sqlite3_clear_bindings(statement) }
        var rows: [T] = []
        while true {
            switch sqlite3_step(statement) {
            case SQLITE_ROW: rows.append(try read(DirectRow(statement: statement)))
            case SQLITE_DONE: return rows
            case let rc: throw failure(rc)
            }
        }
    }

    private func bindDirect(_ arguments: [DirectArgument]) throws -> OpaquePointer {
        let statement = sqliteStatement
        sqlite3_reset(statement)
        for (i, argument) in arguments.enumerated() {
            let rc = Self.bind(argument, at: Int32(i + 1), to: statement)
            guard rc == SQLITE_OK else { throw failure(rc) }
        }
        return statement
    }

    private func failure(_ rc: Int32) -> DatabaseError {
        let connection = sqlite3_db_handle(sqliteStatement)
        return DatabaseError(resultCode: ResultCode(rawValue: rc), message: connection.map { String(cString: sqlite3_errmsg($0)) }, sql: sql)
    }

    /// SQLite copies every value it is given (SQLITE_TRANSIENT): the Swift storage need not
    /// outlive the call.
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    private static func bind(_ argument: DirectArgument, at index: Int32, to statement: OpaquePointer) -> Int32 {
        switch argument {
        case .null:
            return sqlite3_bind_null(statement, index)
        case .int(let v):
            return sqlite3_bind_int64(statement, index, v)
        case .text(var s):
            return s.withUTF8 { bindText($0, at: index, to: statement) }
        case .utf8(let bytes):
            return bytes.withUnsafeBufferPointer { bindText($0, at: index, to: statement) }
        case .blob(let data):
            return data.withUnsafeBytes { p in
                p.baseAddress.map { sqlite3_bind_blob(statement, index, $0, Int32(p.count), transient) } ?? sqlite3_bind_zeroblob(statement, index, 0)
            }
        }
    }

    private static func bindText(_ p: UnsafeBufferPointer<UInt8>, at index: Int32, to statement: OpaquePointer) -> Int32 {
        // An empty string must bind as '' (a nil pointer would bind NULL).
        guard let base = p.baseAddress, p.count > 0 else { return sqlite3_bind_text(statement, index, "", 0, transient) }
        return base.withMemoryRebound(to: CChar.self, capacity: p.count) { sqlite3_bind_text(statement, index, $0, Int32(p.count), transient) }
    }
}
