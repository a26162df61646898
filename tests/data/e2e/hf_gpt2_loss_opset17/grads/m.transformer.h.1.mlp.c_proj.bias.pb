 B!m.transformer.h.1.mlp.c_proj.biasJ€fnz<5.·¼¤*^¼¤
b<ÖÉA½R…½qÀ=êu}<ö8=˜I–»À{<:Ã<*~¥<0à¼NÐ»HÉ;þç¼µóV¼zÂù<&r°;h¹¿;°A”:È Z¼Ð]ºCx*<|—?=$ÂÁ;ì’¼t°P»Pbv»R­,;ÑüŠ¼