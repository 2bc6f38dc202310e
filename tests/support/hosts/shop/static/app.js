// The shop's own script: served by Flask's static route.
document.addEventListener("DOMContentLoaded", () => console.log("shop ready"));
