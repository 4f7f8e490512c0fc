/// `policies/demo.yaml`, embedded so `mcp-bouncer demo` runs from the binary alone. A test
/// keeps the two identical.
package enum DemoPolicy {
    package static let yaml = #"""
# The policy `mcp-bouncer demo` runs with (embedded in the binary; this copy is kept identical
# by a test). The ${env:...} values are filled in by the demo with the ports it picked.
listen: 127.0.0.1:${env:DEMO_GATEWAY_PORT}
public_url: http://127.0.0.1:${env:DEMO_GATEWAY_PORT}

authorization_servers:
  dev:
    # mcp-bouncer's DEVELOPMENT-ONLY authorization server: `mcp-bouncer run` refuses it.
    issuer: ${env:DEMO_ISSUER}
    require_at_jwt_type: true
    client:
      id: mcp-bouncer-demo
      secret: ${env:DEMO_GATEWAY_CLIENT_SECRET}

resources:
  - path: /mcp
    name: Legacy Jira (demo)
    authorization_server: dev
    scopes_supported: [jira:read]
    upstream: ${env:DEMO_UPSTREAM}/mcp
    # The tool definitions as they were reviewed (the demo pins the server as it starts, as
    # `mcp-bouncer pin` would): one that changes afterwards is hidden and its calls refused.
    tool_pins: ${env:DEMO_TOOL_PINS}
    # The legacy server gets a token of its own, never the client's.
    upstream_credentials:
      token_exchange:
        audience: demo-upstream
        scope: jira:read
        tools:
          create_issue: { scope: jira:write }
          delete_issue: { scope: jira:admin }
    methods:
      initialize: []
      notifications/*: []
      ping: []
      tools/list: [jira:read]
      tools/call:
        list_issues: [jira:read]
        slow_report: [jira:read]
        sign_in: [jira:read]
        export_issues: [jira:read]
        create_issue: [jira:write]
        delete_issue: [jira:admin]
      resources/list: [jira:read]
      resources/read:
        "docs://*": [jira:read]
"""#
}
