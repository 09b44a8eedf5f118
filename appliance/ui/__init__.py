"""The tablet app (Kivy): screens and widgets that turn touches into calls of the core.

Nothing here processes images, writes SQL or runs models; it calls `appliance.editing`,
`appliance.overlay`, the store, bundles and assistance, and draws their state. Importing this
package imports Kivy, so only `appliance run` and the UI tests do it.
"""
