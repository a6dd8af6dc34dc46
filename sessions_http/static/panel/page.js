// The page at /. Local development only: /#psession=TOKEN (what `sessions-api demo` prints)
// signs this browser in. The fragment never reaches the server or its logs, and it is removed
// from the address bar at once. Elsewhere it is ignored, so that a link cannot sign someone into
// another account on a real deployment.
const local = ["localhost", "127.0.0.1", "[::1]"].includes(location.hostname);
const match = /^#psession=([A-Za-z0-9_-]{16,256})$/.exec(location.hash);
if (match) {
  history.replaceState(null, "", location.pathname + location.search);
  if (local) {
    document.cookie = `psession=${match[1]}; path=/; SameSite=Strict`;
    location.reload();
  }
}
