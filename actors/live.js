// Live updates for an open page (served at /live.js, a script of the store's own origin under
// its Content-Security-Policy). Holds a WebSocket to /live on the page's own host and applies
// what it says: the cart count and cart blocks after a cart change in another tab, prices and
// stock after a catalog change. Values from events only ever go into the page as text; the
// cart blocks are the server's own render of this page, fetched again.
(function () {
  if (!window.WebSocket || !window.fetch || !window.DOMParser) return;
  var root = document.documentElement;
  var delay = 1000;
  var MAX_DELAY = 60000;

  function formatPrice(amount, currency) {
    var value = Number(amount);
    try {
      return new Intl.NumberFormat(root.lang || 'en-US', { style: 'currency', currency: currency }).format(value);
    } catch (_) {
      return value.toFixed(2) + ' ' + currency;
    }
  }

  function byProduct(id) {
    var out = [];
    var all = document.querySelectorAll('[data-product-id]');
    for (var i = 0; i < all.length; i++) if (all[i].getAttribute('data-product-id') === id) out.push(all[i]);
    return out;
  }

  // Replaces the elements matching `selector` with their counterparts in a fresh render of
  // this page (same order), leaving everything else (forms being filled in) alone.
  var refreshing = null;
  function refresh(selectors) {
    if (!selectors.length) return;
    if (refreshing) { refreshing.again = refreshing.again.concat(selectors); return; }
    refreshing = { again: [] };
    fetch(location.href, { credentials: 'same-origin', headers: { Accept: 'text/html' } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(new Error('HTTP ' + r.status)); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, 'text/html');
        selectors.forEach(function (selector) {
          var now = document.querySelectorAll(selector);
          var next = fresh.querySelectorAll(selector);
          for (var i = 0; i < now.length && i < next.length; i++) now[i].replaceWith(document.importNode(next[i], true));
        });
      })
      .catch(function () {})
      .then(function () {
        var again = refreshing.again;
        refreshing = null;
        if (again.length) refresh(again);
      });
  }

  var CART_BLOCKS = ['.v-cart', '.v-cart-summary'];

  function onCart(event) {
    var badge = document.getElementById('v-cart-count');
    if (badge && typeof event.count === 'number') badge.textContent = String(event.count);
    refresh(CART_BLOCKS.filter(function (s) { return document.querySelector(s); }));
  }

  function onProduct(event) {
    var again = [];
    (event.products || []).forEach(function (p) {
      var id = String(p.id);
      byProduct(id).forEach(function (el) {
        if (p.removed || typeof p.price !== 'string') { again.push('[data-product-id]'); return; }
        var price = el.querySelector('.v-price:not(.v-price--compare)');
        if (price) price.textContent = formatPrice(p.price, event.currency);
        var soldOut = !!el.querySelector('.v-sold-out');
        if (soldOut === !!p.available) again.push('[data-product-id]');
      });
    });
    if (again.length) again = ['[data-product-id]'];
    if (document.querySelector('.v-cart, .v-cart-summary')) again = again.concat(CART_BLOCKS);
    refresh(again.filter(function (s) { return document.querySelector(s); }));
  }

  var socket = null;
  var asShopper = false;

  function connect() {
    try {
      socket = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/live');
    } catch (_) {
      return;
    }
    var own = socket;
    own.onmessage = function (msg) {
      var event;
      try { event = JSON.parse(msg.data); } catch (_) { return; }
      if (!event || typeof event.type !== 'string') return;
      if (event.type === 'hello') {
        delay = 1000;
        asShopper = event.shopper === true;
        root.setAttribute('data-live', asShopper ? 'shopper' : 'guest');
      } else if (event.type === 'cart') onCart(event);
      else if (event.type === 'product') onProduct(event);
    };
    own.onclose = function () {
      if (own !== socket) return; // replaced on purpose (see upgrade)
      root.setAttribute('data-live', 'closed');
      // Backoff with jitter, so the pages of a node that went away do not reconnect at once.
      var wait = delay / 2 + Math.random() * delay / 2;
      delay = Math.min(delay * 2, MAX_DELAY);
      setTimeout(connect, wait);
    };
  }

  // A page opened before the visitor had a session listens as a guest. Its first cart write
  // (here, or in another tab of the same site) gives it one: reconnect to hear its cart.
  function upgrade() {
    if (asShopper || !socket) return;
    var old = socket;
    socket = null;
    old.close();
    connect();
  }
  var tabs = window.BroadcastChannel ? new BroadcastChannel('vitrina-live') : null;
  document.addEventListener('vitrina:cart', function () {
    if (tabs) tabs.postMessage('session');
    upgrade();
  });
  if (tabs) tabs.onmessage = upgrade;

  connect();
})();
