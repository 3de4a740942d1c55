def nesterov(w, g, buf, lr, momentum=0.9, wd=0.0):
    "Nesterov momentum in torch.optim.SGD's form: step along d + momentum buf."
    d = g + wd * w
    buf = momentum * buf + d
    update = lr * (d + momentum * buf)
    return update, buf
