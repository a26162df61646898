 B!m.transformer.h.1.mlp.c_proj.biasJ€jnz<5.·¼¡*^¼¢
b<ÔÉA½R…½qÀ=æu}<ø8=”I–»Á{<:Ã<(~¥<0à¼NÐ»HÉ;þç¼·óV¼zÂù<$r°;g¹¿;¸A”:Æ Z¼Ð]ºDx*<z—?=%ÂÁ;î’¼°P»Hbv»\­,;ÒüŠ¼