/// Where `${env:NAME}` and `${file:PATH}` come from. The loader does no IO itself: the
/// executable passes the process environment and a file reader, tests pass dictionaries.
public struct SecretSource: Sendable {
    public var environment: @Sendable (String) -> String?
    /// The file's contents, or a reason it could not be read.
    public var readFile: @Sendable (String) -> Result<String, SecretReadError>

    public init(
        environment: @escaping @Sendable (String) -> String?,
        readFile: @escaping @Sendable (String) -> Result<String, SecretReadError>
    ) {
        self.environment = environment
        self.readFile = readFile
    }

    /// No environment, no files: any reference is a problem.
    public static let empty = SecretSource(environment: { _ in nil }, readFile: { _ in .failure(SecretReadError(reason: "file references are not available here")) })
}

public struct SecretReadError: Error, Sendable {
    public var reason: String
    public init(reason: String) { self.reason = reason }
}
