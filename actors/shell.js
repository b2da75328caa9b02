// Progressive enhancement for the page shell. Every action also works as a plain HTML form;
// this only keeps the shopper on the page and updates the cart count in place.
(function () {
  function updateCount(cart) {
    var el = document.getElementById('v-cart-count');
    if (el && cart && typeof cart.count === 'number') el.textContent = String(cart.count);
  }
  // A node that sheds a request (503 with Retry-After: busy, or the shopper's actor moving
  // between nodes) has not applied it: sent again after the pause it names, a few times, the
  // shopper sees the add succeed instead of an error.
  var RETRIES = 3;
  function post(url, body, tries) {
    tries = tries || 0;
    return fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Accept': 'application/json' },
      credentials: 'same-origin',
      body: JSON.stringify(body)
    }).then(function (r) {
      var after = Number(r.headers.get('Retry-After'));
      if (r.status === 503 && tries < RETRIES && after >= 0 && after <= 10) {
        return new Promise(function (resolve) { setTimeout(resolve, Math.max(after, 0.2) * 1000); })
          .then(function () { return post(url, body, tries + 1); });
      }
      return r.json().then(function (data) {
        // A session replaced at checkout (in another tab): the answer cleared its cookie, and
        // the add goes to a new session.
        var code = data && data.error && data.error.code;
        if (r.status === 409 && code === 'session_expired' && tries < RETRIES) return post(url, body, tries + 1);
        if (!r.ok) throw new Error((data && data.error && data.error.message) || ('HTTP ' + r.status));
        return data;
      });
    });
  }
  // The seed's blocks call addToCart(id, quantity) from onclick handlers.
  window.addToCart = function (productId, quantity) {
    return post('/cart/items', { productId: String(productId), quantity: quantity || 1 })
      .then(function (data) {
        updateCount(data.cart);
        // The live script (/live.js) listens: a first write may have given this page a session.
        document.dispatchEvent(new CustomEvent('vitrina:cart'));
        return data.cart;
      })
      .catch(function (err) { alert(err.message); });
  };
  // The page's Content-Security-Policy does not run inline handlers (onclick="..."), so the
  // seed's documented onclick="addToCart('id', n)" is read and run from here instead; the
  // handler itself is cleared so a browser without CSP does not add twice.
  var ADD = /^\s*addToCart\(\s*(['"])([A-Za-z0-9_-]{1,64})\1\s*(?:,\s*(\d{1,3})\s*)?\)\s*;?\s*$/;
  document.addEventListener('click', function (ev) {
    var el = ev.target && ev.target.closest ? ev.target.closest('[onclick]') : null;
    var m = el && ADD.exec(el.getAttribute('onclick') || '');
    if (!m) return;
    el.onclick = null;
    ev.preventDefault();
    window.addToCart(m[2], m[3] ? parseInt(m[3], 10) : 1);
  }, true);
  document.addEventListener('submit', function (ev) {
    var form = ev.target;
    if (!form || form.getAttribute('action') !== '/cart/items' || !window.fetch) return;
    ev.preventDefault();
    var id = form.querySelector('[name=product_id]');
    var qty = form.querySelector('[name=quantity]');
    window.addToCart(id ? id.value : '', qty ? parseInt(qty.value, 10) || 1 : 1).then(function (cart) {
      if (!cart) return;
      var button = form.querySelector('button');
      if (button) {
        var label = button.textContent;
        button.textContent = 'Added ✓';
        setTimeout(function () { button.textContent = label; }, 1200);
      }
    });
  });
})();
