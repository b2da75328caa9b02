// Draft events of this store (GET /admin/live, a WebSocket the console's session opens): another
// editor saved a page's drafts, so an open preview of that page renders again. Held while the
// editor screen is open (`anchor` in the document), then closed; reconnects with backoff.

export function watchDrafts(anchor, onDraft) {
  let delay = 1000;
  let socket = null;
  function connect() {
    if (!anchor.isConnected && socket) return;
    socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/admin/live`);
    const own = socket;
    own.onopen = () => (delay = 1000);
    own.onmessage = (msg) => {
      if (!anchor.isConnected) return own.close();
      let event;
      try {
        event = JSON.parse(msg.data);
      } catch {
        return;
      }
      if (event && event.type === "hello") document.body.dataset.draftsLive = "open";
      if (event && event.type === "draft") onDraft(event);
    };
    own.onclose = () => {
      if (!anchor.isConnected) return;
      document.body.dataset.draftsLive = "closed";
      setTimeout(connect, delay / 2 + Math.random() * delay / 2);
      delay = Math.min(delay * 2, 60000);
    };
  }
  connect();
  // Leaving the editor (the preview frame is removed) closes the socket.
  const check = setInterval(() => {
    if (anchor.isConnected) return;
    clearInterval(check);
    if (socket) socket.close();
  }, 2000);
}
