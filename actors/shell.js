// Progressive enhancement for the page shell. Every action also works as a plain HTML form;
// this only keeps the shopper on the page and updates the cart count in place.
(function () {
  function updateCount(cart) {
    var el = document.getElementById('v-cart-count');
    if (el && cart && typeof cart.count === 'number') el.textContent = String(cart.count);
  }
  function post(url, body) {
    return fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Accept': 'application/json' },
      credentials: 'same-origin',
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (data) {
        if (!r.ok) throw new Error((data && data.error && data.error.message) || ('HTTP ' + r.status));
        return data;
      });
    });
  }
  // The seed's blocks call addToCart(id, quantity) from onclick handlers.
  window.addToCart = function (productId, quantity) {
    return post('/cart/items', { productId: String(productId), quantity: quantity || 1 })
      .then(function (data) { updateCount(data.cart); return data.cart; })
      .catch(function (err) { alert(err.message); });
  };
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
