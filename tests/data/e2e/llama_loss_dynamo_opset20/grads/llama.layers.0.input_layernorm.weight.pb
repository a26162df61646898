 B%llama.layers.0.input_layernorm.weightJ€Ó_i=ñ@;î{T:9å:\(€:LL1<€Äœº\
/»
Q¼&u™»zþR¼âà¼VöÒ»y-›;LÒD¼9á‡¼Òx”;÷›;ne–¼²d	<Ÿ£€<Ö‘Œ¼žÜ†»BÇR»®¤¼-;_;Rüó<£Ê{<ð#<Á½Y¼7Öé¼