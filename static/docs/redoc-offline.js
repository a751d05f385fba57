// Redoc's side menu shows its vendor's logo from cdn.redoc.ly, and no option turns it off. These
// pages load nothing from another site: an image from another origin gets an empty one instead,
// and Redoc leaves the logo out when it fails to load. Loaded before Redoc, which sets an image's
// address both ways (attribute and property).
(() => {
  const offSite = (value) => {
    const url = new URL(String(value), document.baseURI);
    return /^https?:$/.test(url.protocol) && url.origin !== window.location.origin;
  };
  const src = Object.getOwnPropertyDescriptor(HTMLImageElement.prototype, "src");
  Object.defineProperty(HTMLImageElement.prototype, "src", {
    ...src,
    set(value) {
      src.set.call(this, offSite(value) ? "data:," : value);
    },
  });
  const setAttribute = Element.prototype.setAttribute;
  HTMLImageElement.prototype.setAttribute = function (name, value) {
    const blocked = String(name).toLowerCase() === "src" && offSite(value);
    return setAttribute.call(this, name, blocked ? "data:," : value);
  };
})();
